package adminapi

import (
	"net/http"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/xds"
	"github.com/bulwarkmesh/bulwark/xds/ir"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// serveConfig answers GET /v1/config?node=ID or ?service=S&flavor=F with the
// exact xDS that group receives.
func (s *Server) serveConfig(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var key xdsserver.GroupKey
	switch {
	case q.Get("node") != "":
		p, ok := s.Fleet.Local(q.Get("node"))
		if !ok {
			writeProblem(w, http.StatusNotFound, "no connected proxy with id "+q.Get("node"), nil)
			return
		}
		res := s.Builds.Published(p.Group)
		if res == nil {
			writeProblem(w, http.StatusNotFound, "no snapshot for group "+p.Group, nil)
			return
		}
		writeRaw(w, res)
		return
	case q.Get("service") != "" || q.Get("flavor") != "":
		key = xdsserver.GroupKey{Flavor: ir.Flavor(q.Get("flavor")), Service: q.Get("service"), Outbound: xdsserver.DefaultOutbound}
		if key.Flavor == "" {
			key.Flavor = ir.FlavorEnvoy
		}
		if key.Flavor != ir.FlavorEnvoy && key.Flavor != ir.FlavorGRPC {
			writeProblem(w, http.StatusBadRequest, "flavor must be envoy or grpc", nil)
			return
		}
		if key.Flavor == ir.FlavorGRPC {
			key.Outbound = ir.Address{}
		}
	default:
		writeProblem(w, http.StatusBadRequest, "give node=ID, or service=S and flavor=envoy|grpc", nil)
		return
	}
	if res := s.Builds.Published(key.String()); res != nil {
		writeRaw(w, res)
		return
	}
	set, _ := s.Builds.Set()
	res, errs := xds.Render(set, key.Flavor, key.Service)
	if res == nil {
		writeProblem(w, http.StatusInternalServerError, "render failed", errs)
		return
	}
	writeRaw(w, res)
}

func writeRaw(w http.ResponseWriter, res *translate.Resources) {
	b, err := xds.MarshalJSON(res)
	if err != nil {
		writeProblem(w, http.StatusInternalServerError, err.Error(), nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func writeProblem(w http.ResponseWriter, code int, detail string, errs []error) {
	typ := api.ProblemInvalid
	switch code {
	case http.StatusNotFound:
		typ = api.ProblemNotFound
	case http.StatusInternalServerError:
		typ = api.ProblemInternal
	}
	p := api.NewProblem(code, typ, detail)
	for _, e := range errs {
		p.Violations = append(p.Violations, api.Violation{Message: e.Error()})
	}
	api.SendProblem(w, p)
}
