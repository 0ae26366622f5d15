package adminapi

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
)

// route is one endpoint of the admin port: a ServeMux pattern
// ("GET /v1/services/{name}"), the role it needs and its handler. Every
// route of the admin port is in the table, so the OpenAPI test can check
// the document against it.
type route struct {
	pattern string
	role    Role
	handler http.HandlerFunc
}

// kindPath maps the collection name of a path to a resource kind.
type kindPath struct {
	plural, kind string
}

// apiKinds are the resource collections under /v1/.
var apiKinds = []kindPath{
	{"services", policies.KindService},
	{"policies", policies.KindPolicy},
	{"experiments", policies.KindExperiment},
}

// apiRoutes are the REST API's resource, apply, registration, chaos and
// audit routes.
func (s *Server) apiRoutes() []route {
	var rs []route
	for _, k := range apiKinds {
		rs = append(rs,
			route{"GET /v1/" + k.plural, RoleViewer, s.listResources(k.kind)},
			route{"GET /v1/" + k.plural + "/{name}", RoleViewer, s.getResource(k.kind)},
			route{"PUT /v1/" + k.plural + "/{name}", RoleEditor, s.putResource(k.kind)},
			route{"DELETE /v1/" + k.plural + "/{name}", RoleEditor, s.deleteResource(k.kind)},
		)
	}
	return append(rs,
		route{"POST /v1/apply", RoleEditor, s.serveApply},
		route{"GET /v1/services/{service}/endpoints", RoleViewer, s.listEndpoints},
		route{"PUT /v1/services/{service}/endpoints/{instance}", RoleEditor, s.registerEndpoint},
		route{"POST /v1/services/{service}/endpoints/{instance}/keepalive", RoleEditor, s.keepAliveEndpoint},
		route{"DELETE /v1/services/{service}/endpoints/{instance}", RoleEditor, s.deregisterEndpoint},
		route{"POST /v1/experiments/stop", RoleEditor, s.killSwitch},
		route{"GET /v1/experiments/history", RoleViewer, s.experimentHistory},
		route{"GET /v1/history/experiments", RoleViewer, s.experimentHistory}, // design §12's name for the same list
		route{"GET /v1/audit", RoleViewer, s.serveAudit},
		route{"GET /v1/recommendations", RoleViewer, s.serveRecommendations},
		route{"GET /v1/whoami", RoleViewer, s.serveWhoAmI},
		route{"GET /v1/effective", RoleViewer, s.serveEffective},
		route{"GET /v1/history", RoleViewer, s.writeHistory},
		route{"GET /v1/version", RoleViewer, serveVersion},
		route{"GET /v1/openapi.json", RoleNone, serveOpenAPI},
	)
}

// newAdminMux mounts routes, each behind its role check, on a ServeMux whose
// unknown paths and wrong methods also answer with problem+json.
func newAdminMux(routes []route, ts Tokens) (*http.ServeMux, http.Handler) {
	mux := http.NewServeMux()
	for _, rt := range routes {
		mux.Handle(rt.pattern, ts.authorize(rt.role, rt.handler))
	}
	return mux, problemMux{mux}
}

// problemMux turns the ServeMux's plain-text 404 and 405 answers into
// problem+json.
type problemMux struct{ mux *http.ServeMux }

func (m problemMux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := m.mux.Handler(r)
	if pattern != "" {
		m.mux.ServeHTTP(w, r)
		return
	}
	// No route: let the mux decide between 404 and 405 (with Allow), then
	// answer in our format.
	cw := &captureWriter{header: http.Header{}}
	h.ServeHTTP(cw, r)
	if cw.code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", cw.header.Get("Allow"))
		api.SendProblem(w, api.NewProblem(http.StatusMethodNotAllowed, api.ProblemMethodNotAllowed,
			r.Method+" is not allowed on "+r.URL.Path+"; allowed: "+cw.header.Get("Allow")))
		return
	}
	api.SendProblem(w, api.NewProblem(http.StatusNotFound, api.ProblemNotFound,
		"no such path: "+r.URL.Path+" (the API is described at /v1/openapi.json)"))
}

// captureWriter records the status and headers a handler writes.
type captureWriter struct {
	header http.Header
	code   int
}

func (c *captureWriter) Header() http.Header { return c.header }
func (c *captureWriter) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}
func (c *captureWriter) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return len(b), nil
}

// apiStoreTimeout bounds each request's store work; when the store is known
// to be down, requests fail faster.
const (
	apiStoreTimeout     = 5 * time.Second
	apiStoreDownTimeout = time.Second
)

// storeCtx returns the context for a request's store work.
func (s *Server) storeCtx(r *http.Request) (context.Context, context.CancelFunc) {
	d := apiStoreTimeout
	if up, _, _ := s.Health.StoreState(); !up {
		d = apiStoreDownTimeout
	}
	return context.WithTimeout(r.Context(), d)
}

// etag renders a revision as an ETag, which If-Match accepts back.
func etag(rev int64) string { return `"` + strconv.FormatInt(rev, 10) + `"` }

// checkName refuses a path segment that is not a DNS-1123 label, the shape
// of every resource name.
func checkName(field, name string) error {
	if policies.IsDNSLabel(name) {
		return nil
	}
	return api.Invalid(field+" "+strconv.Quote(name)+" is not a valid name",
		api.Violation{Field: field, Message: "must be a DNS-1123 label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"})
}
