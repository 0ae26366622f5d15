package adminapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/prom"
	"github.com/bulwarkmesh/bulwark/policies"
)

// Recommender recommends timeouts from what Prometheus observed;
// *recommend.Recommender is one. nil without --prometheus-url.
type Recommender interface {
	Report(ctx context.Context, set *policies.Set, service string, window time.Duration) (*api.RecommendationReport, error)
}

// Bounds of ?window= for recommendations.
const (
	minRecommendWindow = 10 * time.Second
	maxRecommendWindow = 30 * 24 * time.Hour
	// recommendTimeout bounds the whole report (several queries per service).
	recommendTimeout = 30 * time.Second
)

// serveRecommendations answers GET /v1/recommendations[?service=S&window=1h].
func (s *Server) serveRecommendations(w http.ResponseWriter, r *http.Request) {
	if s.Recommender == nil {
		s.sendError(w, r, api.NewProblem(http.StatusNotImplemented, api.ProblemPrometheusOff,
			"recommendations need a Prometheus: start bulwark with --prometheus-url"))
		return
	}
	var window time.Duration
	if v := r.URL.Query().Get("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < minRecommendWindow || d > maxRecommendWindow {
			s.sendError(w, r, api.Invalid("window must be a duration between 10s and 720h, such as 1h",
				api.Violation{Field: "window", Message: "must be a duration between 10s and 720h (got " + v + ")"}))
			return
		}
		window = d
	}
	set, _ := s.Builds.Set()
	if set == nil {
		set = policies.NewSet()
	}
	service := r.URL.Query().Get("service")
	if service != "" && set.Services[service] == nil {
		s.sendError(w, r, api.NewProblem(http.StatusNotFound, api.ProblemNotFound, "service "+service+" does not exist"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), recommendTimeout)
	defer cancel()
	rep, err := s.Recommender.Report(ctx, set, service, window)
	if err != nil {
		var qe *prom.QueryError
		code, typ := http.StatusBadGateway, api.ProblemPrometheusDown
		if errors.As(err, &qe) {
			typ = api.ProblemInvalid // a template the configuration got wrong
		}
		s.sendError(w, r, api.NewProblem(code, typ, "prometheus: "+err.Error()))
		return
	}
	if s.Prometheus != nil {
		rep.Prometheus = s.Prometheus()
	}
	writeJSON(w, http.StatusOK, rep)
}
