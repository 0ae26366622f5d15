package api

import "github.com/bulwarkmesh/bulwark/policies"

// RecommendationReport is the answer of GET /v1/recommendations: per
// (caller, service, flavor) with data, what was observed over the window,
// what is configured, and the timeouts the rule recommends.
type RecommendationReport struct {
	Window      string           `json:"window"`
	MinRequests int              `json:"minRequests"`
	Rule        string           `json:"rule"`
	Items       []Recommendation `json:"items"`
	// Policies are the recommendations as ResiliencePolicies, one per
	// service with a recommendation: its service-level policy with the
	// timeouts replaced, or a new one. Each validates and lints clean with
	// the current set.
	Policies []*policies.ResiliencePolicy `json:"policies"`
	// Findings are lint warnings from the observations: a configured
	// timeout below the observed p99, or far above it.
	Findings   []policies.Finding `json:"findings"`
	Prometheus PrometheusStatus   `json:"prometheus"`
}

// Recommendation is one (caller, service, flavor).
type Recommendation struct {
	Caller  string `json:"caller"`
	Service string `json:"service"`
	Flavor  string `json:"flavor"`
	// Requests is how many calls completed over the window.
	Requests float64 `json:"requests"`
	// Observed latencies in milliseconds, and the error rate 0–1.
	P50Ms        *float64 `json:"p50Ms,omitempty"`
	P99Ms        *float64 `json:"p99Ms,omitempty"`
	P999Ms       *float64 `json:"p999Ms,omitempty"`
	AttemptP99Ms *float64 `json:"attemptP99Ms,omitempty"`
	ErrorRate    *float64 `json:"errorRate,omitempty"`
	// Configured timeouts in force for this caller ("" when unset).
	ConfiguredRequest string `json:"configuredRequest,omitempty"`
	ConfiguredPerTry  string `json:"configuredPerTry,omitempty"`
	// Recommended timeouts; empty with Reason saying why not.
	RecommendedRequest string `json:"recommendedRequest,omitempty"`
	RecommendedPerTry  string `json:"recommendedPerTry,omitempty"`
	Reason             string `json:"reason,omitempty"`
}
