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
			s.sendError(w, r, api.NewProblem(http.StatusNotFound, api.ProblemNotFound, "no connected proxy with id "+q.Get("node")))
			return
		}
		res := s.Builds.Published(p.Group)
		if res == nil {
			s.sendError(w, r, api.NewProblem(http.StatusNotFound, api.ProblemNotFound, "no snapshot for group "+p.Group))
			return
		}
		s.writeRaw(w, r, res)
		return
	case q.Get("service") != "" || q.Get("flavor") != "":
		key = xdsserver.GroupKey{Flavor: ir.Flavor(q.Get("flavor")), Service: q.Get("service"), Outbound: xdsserver.DefaultOutbound}
		if key.Flavor == "" {
			key.Flavor = ir.FlavorEnvoy
		}
		if key.Flavor != ir.FlavorEnvoy && key.Flavor != ir.FlavorGRPC {
			s.sendError(w, r, api.Invalid("flavor must be envoy or grpc", api.Violation{Field: "flavor", Message: "must be envoy or grpc"}))
			return
		}
		if key.Flavor == ir.FlavorGRPC {
			key.Outbound = ir.Address{}
		}
	default:
		s.sendError(w, r, api.Invalid("give node=ID, or service=S and flavor=envoy|grpc"))
		return
	}
	if res := s.Builds.Published(key.String()); res != nil {
		s.writeRaw(w, r, res)
		return
	}
	set, _ := s.Builds.Set()
	res, errs := xds.Render(set, key.Flavor, key.Service)
	if res == nil {
		p := api.NewProblem(http.StatusInternalServerError, api.ProblemInternal, "render failed")
		for _, e := range errs {
			p.Violations = append(p.Violations, api.Violation{Message: e.Error()})
		}
		s.sendError(w, r, p)
		return
	}
	s.writeRaw(w, r, res)
}

// writeRaw answers with resources as xDS JSON.
func (s *Server) writeRaw(w http.ResponseWriter, r *http.Request, res *translate.Resources) {
	b, err := xds.MarshalJSON(res)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}
