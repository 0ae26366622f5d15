package api

import "time"

// Audit check names, in the order the report lists them.
const (
	AuditTimeouts       = "timeouts"
	AuditCircuitBreaker = "circuitBreaker"
	AuditRetries        = "retries"
	AuditBulkhead       = "bulkhead"
	AuditFallback       = "fallback"
	AuditHealthCheck    = "healthCheck"
	AuditChaos          = "chaos"
)

// Audit statuses.
const (
	AuditOK      = "ok"
	AuditPartial = "partial" // some callers have it, others not
	AuditMissing = "missing"
)

// AuditWindow is how recent a chaos experiment must be to count.
const AuditWindow = 30 * 24 * time.Hour

// AuditReport is the answer of GET /v1/audit: the resilience checklist of
// every service.
type AuditReport struct {
	Revision    int64          `json:"revision"`
	GeneratedAt time.Time      `json:"generatedAt"`
	Services    []ServiceAudit `json:"services"`
}

// ServiceAudit is one service's checklist.
type ServiceAudit struct {
	Service string       `json:"service"`
	Passed  int          `json:"passed"`
	Total   int          `json:"total"`
	Checks  []AuditCheck `json:"checks"`
	// Circuit is the service's circuit state as Prometheus sees it.
	Circuit *CircuitState `json:"circuit,omitempty"`
}

// AuditCheck is one item of the checklist: whether calls to the service
// have it, which policies (or experiments) provide it, and what to add when
// it is missing.
type AuditCheck struct {
	Item       string   `json:"item"`
	Status     string   `json:"status"`
	ProvidedBy []string `json:"providedBy,omitempty"`
	Detail     string   `json:"detail"`
	// MissingFor lists the callers whose calls lack it ("*" stands for
	// callers that no source-scoped policy names).
	MissingFor []string `json:"missingFor,omitempty"`
	Fix        string   `json:"fix,omitempty"`
}

// CircuitState is what Prometheus shows of a service's circuit now, summed
// over its callers' proxies: hosts ejected by outlier detection, healthy
// hosts, whether the fallback serves (a fallback is configured and no host
// is healthy), and retry and retry-overflow rates. A field is absent when
// no metric tells it (proxyless gRPC exports no ejection or host counts).
type CircuitState struct {
	// Known is false without a Prometheus, or when it did not answer; Reason says why.
	Known  bool   `json:"known"`
	Reason string `json:"reason,omitempty"`

	HostsEjected       *float64 `json:"hostsEjected,omitempty"`
	HealthyHosts       *float64 `json:"healthyHosts,omitempty"`
	FallbackConfigured bool     `json:"fallbackConfigured"`
	FallbackServing    *bool    `json:"fallbackServing,omitempty"`
	// Per second over the last 5 minutes.
	RetryRate         *float64 `json:"retryRate,omitempty"`
	RetryOverflowRate *float64 `json:"retryOverflowRate,omitempty"`
}
