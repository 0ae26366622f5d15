package controlplane

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/bulwarkmesh/bulwark/xds"
	"github.com/bulwarkmesh/bulwark/xds/ir"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

func nopZap() *zap.Logger { return zap.NewNop() }

// adminHandler serves health, metrics, status and the REST API. Health,
// metrics and the OpenAPI document are open; every other route needs a
// token of --token-file (viewer reads, editor writes) when one is given.
func (cp *ControlPlane) adminHandler() (http.Handler, error) {
	ts := cp.tokens
	mux, handler := newAdminMux(cp.routes(), ts)
	if cp.cfg.EnablePprof {
		mux.Handle("/debug/pprof/", ts.authorize(RoleEditor, http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/cmdline", ts.authorize(RoleEditor, http.HandlerFunc(pprof.Cmdline)))
		mux.Handle("/debug/pprof/profile", ts.authorize(RoleEditor, http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", ts.authorize(RoleEditor, http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", ts.authorize(RoleEditor, http.HandlerFunc(pprof.Trace)))
	}
	return handler, nil
}

// routes is every route of the admin port (pprof aside).
func (cp *ControlPlane) routes() []route {
	metrics := promhttp.HandlerFor(cp.metrics.registry, promhttp.HandlerOpts{})
	return append([]route{
		{"GET /health/live", RoleNone, func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"live": true})
		}},
		{"GET /health/ready", RoleNone, func(w http.ResponseWriter, _ *http.Request) {
			r := cp.readiness()
			code := http.StatusOK
			if !r.Ready {
				code = http.StatusServiceUnavailable
			}
			writeJSON(w, code, r)
		}},
		{"GET /metrics", RoleNone, metrics.ServeHTTP},
		{"GET /v1/proxies", RoleViewer, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"items": cp.fleet(r.Context())})
		}},
		{"GET /v1/status", RoleViewer, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, cp.Status(r.Context()))
		}},
		{"GET /v1/config", RoleViewer, cp.serveConfig},
	}, cp.apiRoutes()...)
}

// fleet returns every proxy of every replica: this replica's from memory,
// the others' from the store (leased, so a dead replica's proxies vanish).
func (cp *ControlPlane) fleet(ctx context.Context) []ProxyStatus {
	out := cp.tracker.Proxies()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	all, err := cp.store.ListStatus(ctx)
	if err == nil {
		for replica, nodes := range all {
			if replica == cp.cfg.Replica {
				continue
			}
			for _, raw := range nodes {
				var p ProxyStatus
				if json.Unmarshal(raw, &p) == nil {
					out = append(out, p)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Rollout summarises how far the current revision has reached.
type Rollout struct {
	Total     int `json:"total"`
	Converged int `json:"converged"`
	Rejecting int `json:"rejecting"`
	Pending   int `json:"pending"`
}

// StatusReport is the body of GET /v1/status.
type StatusReport struct {
	Revision int64          `json:"revision"`
	Replica  string         `json:"replica"`
	Ready    bool           `json:"ready"`
	Reasons  []string       `json:"reasons,omitempty"`
	StoreUp  bool           `json:"storeUp"`
	Rollout  Rollout        `json:"rollout"`
	Problems []BuildProblem `json:"problems,omitempty"`
	Sync     *SyncStatus    `json:"sync,omitempty"`
}

// Status reports the revision, readiness, the rollout across the fleet and
// the problems of the last build.
func (cp *ControlPlane) Status(ctx context.Context) StatusReport {
	ready := cp.readiness()
	up, _, _ := cp.health.storeState()
	rep := StatusReport{
		Revision: cp.builder.Revision(), Replica: cp.cfg.Replica,
		Ready: ready.Ready, Reasons: ready.Reasons, StoreUp: up,
		Problems: cp.builder.Problems(),
	}
	if cp.sync != nil {
		st := cp.sync.Status()
		rep.Sync = &st
	}
	for _, p := range cp.fleet(ctx) {
		rep.Rollout.Total++
		switch {
		case p.Converged:
			rep.Rollout.Converged++
		case rejecting(p):
			rep.Rollout.Rejecting++
		default:
			rep.Rollout.Pending++
		}
	}
	return rep
}

// rejecting reports whether a proxy's last response of some type was a NACK.
func rejecting(p ProxyStatus) bool {
	for _, ts := range p.Types {
		if ts.LastNack != nil && ts.LastNack.Version == ts.Sent {
			return true
		}
	}
	return false
}

// serveConfig answers GET /v1/config?node=ID or ?service=S&flavor=F with the
// exact xDS that group receives.
func (cp *ControlPlane) serveConfig(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var key GroupKey
	switch {
	case q.Get("node") != "":
		p, ok := cp.tracker.Proxy(q.Get("node"))
		if !ok {
			writeProblem(w, http.StatusNotFound, "no connected proxy with id "+q.Get("node"), nil)
			return
		}
		res := cp.builder.Published(p.Group)
		if res == nil {
			writeProblem(w, http.StatusNotFound, "no snapshot for group "+p.Group, nil)
			return
		}
		writeRaw(w, res)
		return
	case q.Get("service") != "" || q.Get("flavor") != "":
		key = GroupKey{Flavor: ir.Flavor(q.Get("flavor")), Service: q.Get("service"), Outbound: DefaultOutbound}
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
	if res := cp.builder.Published(key.String()); res != nil {
		writeRaw(w, res)
		return
	}
	set, _ := cp.builder.Set()
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

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeProblem(w http.ResponseWriter, code int, detail string, errs []error) {
	typ := problemInvalid
	switch code {
	case http.StatusNotFound:
		typ = problemNotFound
	case http.StatusInternalServerError:
		typ = problemInternal
	}
	p := newProblem(code, typ, detail)
	for _, e := range errs {
		p.Violations = append(p.Violations, APIViolation{Message: e.Error()})
	}
	sendProblem(w, p)
}
