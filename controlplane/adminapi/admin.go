package adminapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/controlplane/fleet"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// Store is what the API reads and writes directly (everything but
// resource writes, which go through the Applier); *store.Store is one.
type Store interface {
	Load(ctx context.Context) (*policies.Set, int64, []error, error)
	List(ctx context.Context, kind string) ([]policies.Resource, int64, error)
	Get(ctx context.Context, kind, name string) (policies.Resource, error)
	History(ctx context.Context) ([]*policies.ChaosExperiment, error)
	StopExperiments(ctx context.Context, who string) ([]string, error)
	RegisterEndpoint(ctx context.Context, service, instance string, ep policies.Endpoint, ttl time.Duration) (int64, error)
	KeepAliveEndpoint(ctx context.Context, service, instance string) (time.Duration, error)
	DeregisterEndpoint(ctx context.Context, service, instance string) (int64, error)
	PutSteadyState(ctx context.Context, name, startedAt string, st *policies.SteadyStateStatus) error
	ListEndpoints(ctx context.Context, service string) ([]store.RegisteredEndpoint, int64, error)
}

// Applier writes resources with validation and conflict checks;
// *apply.Applier is one.
type Applier interface {
	Put(ctx context.Context, r policies.Resource, expectRev int64, who string) (*api.WriteResult[policies.Resource], error)
	Delete(ctx context.Context, kind, name string, expectRev int64, who string) (*api.WriteResult[policies.Resource], error)
	Apply(ctx context.Context, req apply.Request) (*api.ApplyResult, error)
}

// Fleet is the proxies the API reports; *fleet.View is one.
type Fleet interface {
	// Proxies returns every proxy of every replica.
	Proxies(ctx context.Context) []api.ProxyStatus
	// Local returns one proxy connected to this replica.
	Local(id string) (api.ProxyStatus, bool)
	// Partial reports whether the other replicas' proxies may be missing
	// or stale, and why.
	Partial() (bool, string)
}

// Builds is what the API shows of the snapshots; *snapshot.Builder is one.
type Builds interface {
	// Published returns a group's current resources, or nil.
	Published(group string) *translate.Resources
	// Set returns the set of the last build and its revision.
	Set() (*policies.Set, int64)
	// Revision returns the store revision of the last build.
	Revision() int64
	// Problems returns what the last builds left out, and why.
	Problems() []api.BuildProblem
}

// Health is the replica's readiness and the store's reachability.
type Health interface {
	Readiness() api.Readiness
	// StoreState says whether the store answers, whether readiness still
	// holds (within the grace period), and why not.
	StoreState() (up, withinGrace bool, reason string)
}

// Deps are the parts the API is written against.
type Deps struct {
	Store   Store
	Applier Applier
	// History serves GET /v1/history; nil: the server keeps none.
	History WriteHistory
	Fleet   Fleet
	Builds  Builds
	Health  Health
	// Sync returns the directory sync's state; nil without --sync-dir.
	Sync func() api.SyncStatus
	// Leaders returns, per singleton duty, the replica holding it; nil
	// when no duty is elected.
	Leaders func() map[string]string
	// Metrics serves /metrics.
	Metrics http.Handler
	// Tokens authenticate callers; nil turns authentication off.
	Tokens Tokens
	// Replica names this replica in status.
	Replica string
	Logger  *slog.Logger
	// EnablePprof mounts /debug/pprof (editors only).
	EnablePprof bool
	// SteadyState evaluates experiments before they start; Prometheus
	// reports the data source. Both nil without --prometheus-url.
	SteadyState SteadyState
	Recommender Recommender
	Prometheus  func() api.PrometheusStatus
	// Circuits reads the circuit state of services from Prometheus.
	Circuits func(ctx context.Context, services []string) map[string]api.CircuitState
}

// Server is the admin API of one replica.
type Server struct {
	Deps
}

// New returns the admin API over d.
func New(d Deps) *Server { return &Server{Deps: d} }

// Handler serves health, metrics, status and the REST API. Health, metrics
// and the OpenAPI document are open; every other route needs a token
// (viewer reads, editor writes) when tokens are configured.
func (s *Server) Handler() http.Handler {
	ts := s.Tokens
	mux, handler := newAdminMux(s.routes(), ts)
	if s.EnablePprof {
		mux.Handle("/debug/pprof/", ts.authorize(RoleEditor, http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/cmdline", ts.authorize(RoleEditor, http.HandlerFunc(pprof.Cmdline)))
		mux.Handle("/debug/pprof/profile", ts.authorize(RoleEditor, http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/symbol", ts.authorize(RoleEditor, http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/trace", ts.authorize(RoleEditor, http.HandlerFunc(pprof.Trace)))
	}
	return handler
}

// routes is every route of the admin port (pprof aside).
func (s *Server) routes() []route {
	return append([]route{
		{"GET /health/live", RoleNone, func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusOK, map[string]any{"live": true})
		}},
		{"GET /health/ready", RoleNone, func(w http.ResponseWriter, _ *http.Request) {
			r := s.Health.Readiness()
			code := http.StatusOK
			if !r.Ready {
				code = http.StatusServiceUnavailable
			}
			writeJSON(w, code, r)
		}},
		{"GET /metrics", RoleNone, func(w http.ResponseWriter, r *http.Request) { s.Metrics.ServeHTTP(w, r) }},
		{"GET /v1/proxies", RoleViewer, func(w http.ResponseWriter, r *http.Request) {
			// A partial view is still 200: it is the best knowledge there is,
			// and the partial field says so (docs/api.md).
			partial, why := s.Fleet.Partial()
			writeJSON(w, http.StatusOK, api.ProxyList{Items: s.Fleet.Proxies(r.Context()), Partial: partial, PartialReason: why})
		}},
		{"GET /v1/status", RoleViewer, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, s.Status(r.Context()))
		}},
		{"GET /v1/config", RoleViewer, s.serveConfig},
	}, s.apiRoutes()...)
}

// Status reports the revision, readiness, the rollout across the fleet and
// the problems of the last build.
func (s *Server) Status(ctx context.Context) api.StatusReport {
	ready := s.Health.Readiness()
	up, _, _ := s.Health.StoreState()
	rep := api.StatusReport{
		Revision: s.Builds.Revision(), Replica: s.Replica,
		Ready: ready.Ready, Reasons: ready.Reasons, StoreUp: up,
		Problems: s.Builds.Problems(),
		Rollout:  fleet.RolloutOf(s.Fleet.Proxies(ctx)),
	}
	rep.Partial, rep.PartialReason = s.Fleet.Partial()
	if s.Leaders != nil {
		rep.Leaders = s.Leaders()
	}
	if s.Sync != nil {
		st := s.Sync()
		rep.Sync = &st
	}
	if s.Prometheus != nil {
		rep.Prometheus = s.Prometheus()
	}
	return rep
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
