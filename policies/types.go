// Package policies defines Bulwark's resources (Service, ResiliencePolicy,
// ChaosExperiment), decodes them strictly from YAML or JSON, applies defaults,
// validates them with field paths, lints whole sets of them and resolves the
// precedence between policies.
package policies

// APIVersion is the only apiVersion Bulwark accepts.
const APIVersion = "bulwark/v1"

// Kinds of resources.
const (
	KindService    = "Service"
	KindPolicy     = "ResiliencePolicy"
	KindExperiment = "ChaosExperiment"
)

// Protocols a Service may speak.
const (
	ProtocolHTTP  = "http"
	ProtocolHTTP2 = "http2"
	ProtocolGRPC  = "grpc"
)

// Resource is any Bulwark resource.
type Resource interface {
	// GetKind returns the resource's kind (Service, ResiliencePolicy, ChaosExperiment).
	GetKind() string
	// GetMeta returns the resource's metadata for reading and writing.
	GetMeta() *Metadata
}

// TypeMeta carries the apiVersion and kind of every resource.
type TypeMeta struct {
	APIVersion string `json:"apiVersion" yaml:"apiVersion"`
	Kind       string `json:"kind" yaml:"kind"`
}

// GetKind returns the resource's kind.
func (t TypeMeta) GetKind() string { return t.Kind }

// Metadata names a resource and carries its store bookkeeping.
type Metadata struct {
	Name   string            `json:"name" yaml:"name"`
	Labels map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	// Revision is the etcd mod revision of the stored resource. Writes may
	// carry it for compare-and-swap.
	Revision int64 `json:"revision,omitempty" yaml:"revision,omitempty"`
	// Source records who applied the resource (for example "dir:/srv/policies"),
	// so a pruning apply knows what it owns.
	Source string `json:"source,omitempty" yaml:"source,omitempty"`
}

// Service is an upstream that proxies can call.
type Service struct {
	TypeMeta `json:",inline" yaml:",inline"`
	Metadata Metadata    `json:"metadata" yaml:"metadata"`
	Spec     ServiceSpec `json:"spec" yaml:"spec"`
}

// GetMeta returns the service's metadata.
func (s *Service) GetMeta() *Metadata { return &s.Metadata }

// ServiceSpec describes how to reach a service and what it calls.
type ServiceSpec struct {
	Protocol  string     `json:"protocol,omitempty" yaml:"protocol,omitempty"`
	Port      int        `json:"port" yaml:"port"`
	Endpoints []Endpoint `json:"endpoints,omitempty" yaml:"endpoints,omitempty"`
	// DNS is host:port resolved by the proxy (STRICT_DNS); exclusive with Endpoints.
	DNS string `json:"dns,omitempty" yaml:"dns,omitempty"`
	// Dependencies lists the services this one calls. Nil means every service;
	// an empty list means none (omitzero keeps it in JSON, unlike omitempty).
	Dependencies []string `json:"dependencies,omitzero" yaml:"dependencies,omitempty"`
}

// Endpoint is one instance of a service.
type Endpoint struct {
	Address string `json:"address" yaml:"address"`
	Port    int    `json:"port" yaml:"port"`
	Zone    string `json:"zone,omitempty" yaml:"zone,omitempty"`
	Weight  int    `json:"weight,omitempty" yaml:"weight,omitempty"`
	// Instance names a self-registered endpoint; empty for static ones.
	Instance string `json:"instance,omitempty" yaml:"instance,omitempty"`
}

// ResiliencePolicy says how calls to a service behave.
type ResiliencePolicy struct {
	TypeMeta `json:",inline" yaml:",inline"`
	Metadata Metadata   `json:"metadata" yaml:"metadata"`
	Spec     PolicySpec `json:"spec" yaml:"spec"`
}

// GetMeta returns the policy's metadata.
func (p *ResiliencePolicy) GetMeta() *Metadata { return &p.Metadata }

// PolicySpec is the body of a ResiliencePolicy. Every setting is a pointer so
// that "unset" (inherit from a less specific policy) differs from a zero value.
type PolicySpec struct {
	Target         Target          `json:"target" yaml:"target"`
	Sources        []string        `json:"sources,omitempty" yaml:"sources,omitempty"`
	Timeouts       *Timeouts       `json:"timeouts,omitempty" yaml:"timeouts,omitempty"`
	Retries        *Retries        `json:"retries,omitempty" yaml:"retries,omitempty"`
	CircuitBreaker *CircuitBreaker `json:"circuitBreaker,omitempty" yaml:"circuitBreaker,omitempty"`
	Bulkhead       *Bulkhead       `json:"bulkhead,omitempty" yaml:"bulkhead,omitempty"`
	HealthCheck    *HealthCheck    `json:"healthCheck,omitempty" yaml:"healthCheck,omitempty"`
	Fallback       *Fallback       `json:"fallback,omitempty" yaml:"fallback,omitempty"`
}

// Target selects the calls a policy or experiment applies to.
type Target struct {
	// Service is a service name, or "*" for every service.
	Service string `json:"service,omitempty" yaml:"service,omitempty"`
	// Selector selects every service carrying these labels.
	Selector map[string]string `json:"selector,omitempty" yaml:"selector,omitempty"`
	// Route narrows the target to one route.
	Route *RouteMatch `json:"route,omitempty" yaml:"route,omitempty"`
}

// RouteMatch selects a route of a service.
type RouteMatch struct {
	PathPrefix string `json:"pathPrefix" yaml:"pathPrefix"`
}

// Timeouts bound connection setup, whole requests and idle streams.
type Timeouts struct {
	Connect *Duration `json:"connect,omitempty" yaml:"connect,omitempty"`
	Request *Duration `json:"request,omitempty" yaml:"request,omitempty"`
	Idle    *Duration `json:"idle,omitempty" yaml:"idle,omitempty"`
}

// Retries configures retries with exponential backoff and full jitter.
type Retries struct {
	// Attempts counts retries after the first try; 0 disables retries.
	Attempts      *int      `json:"attempts,omitempty" yaml:"attempts,omitempty"`
	PerTryTimeout *Duration `json:"perTryTimeout,omitempty" yaml:"perTryTimeout,omitempty"`
	On            []string  `json:"on,omitempty" yaml:"on,omitempty"`
	StatusCodes   []int     `json:"statusCodes,omitempty" yaml:"statusCodes,omitempty"`
	Methods       []string  `json:"methods,omitempty" yaml:"methods,omitempty"`
	Backoff       *Backoff  `json:"backoff,omitempty" yaml:"backoff,omitempty"`
	Budget        *Budget   `json:"budget,omitempty" yaml:"budget,omitempty"`
}

// Backoff is the exponential backoff between retries.
type Backoff struct {
	Base *Duration `json:"base,omitempty" yaml:"base,omitempty"`
	Max  *Duration `json:"max,omitempty" yaml:"max,omitempty"`
}

// Budget caps retries as a share of active requests.
type Budget struct {
	Percent        *float64 `json:"percent,omitempty" yaml:"percent,omitempty"`
	MinConcurrency *int     `json:"minConcurrency,omitempty" yaml:"minConcurrency,omitempty"`
}

// CircuitBreaker ejects failing hosts (Envoy outlier detection).
type CircuitBreaker struct {
	Consecutive5xx           *int               `json:"consecutive5xx,omitempty" yaml:"consecutive5xx,omitempty"`
	ConsecutiveGatewayErrors *int               `json:"consecutiveGatewayErrors,omitempty" yaml:"consecutiveGatewayErrors,omitempty"`
	FailurePercentage        *FailurePercentage `json:"failurePercentage,omitempty" yaml:"failurePercentage,omitempty"`
	SuccessRate              *SuccessRate       `json:"successRate,omitempty" yaml:"successRate,omitempty"`
	Interval                 *Duration          `json:"interval,omitempty" yaml:"interval,omitempty"`
	BaseEjectionTime         *Duration          `json:"baseEjectionTime,omitempty" yaml:"baseEjectionTime,omitempty"`
	MaxEjectionPercent       *int               `json:"maxEjectionPercent,omitempty" yaml:"maxEjectionPercent,omitempty"`
}

// FailurePercentage ejects hosts whose failure share exceeds a threshold.
type FailurePercentage struct {
	Threshold     *int `json:"threshold,omitempty" yaml:"threshold,omitempty"`
	MinimumHosts  *int `json:"minimumHosts,omitempty" yaml:"minimumHosts,omitempty"`
	RequestVolume *int `json:"requestVolume,omitempty" yaml:"requestVolume,omitempty"`
}

// SuccessRate ejects hosts whose success rate lies far below the mean.
type SuccessRate struct {
	StdevFactor   *float64 `json:"stdevFactor,omitempty" yaml:"stdevFactor,omitempty"`
	MinimumHosts  *int     `json:"minimumHosts,omitempty" yaml:"minimumHosts,omitempty"`
	RequestVolume *int     `json:"requestVolume,omitempty" yaml:"requestVolume,omitempty"`
}

// Bulkhead limits the connection pool (Envoy's "circuit_breakers" thresholds).
type Bulkhead struct {
	MaxConnections           *int `json:"maxConnections,omitempty" yaml:"maxConnections,omitempty"`
	MaxPendingRequests       *int `json:"maxPendingRequests,omitempty" yaml:"maxPendingRequests,omitempty"`
	MaxRequests              *int `json:"maxRequests,omitempty" yaml:"maxRequests,omitempty"`
	MaxRetries               *int `json:"maxRetries,omitempty" yaml:"maxRetries,omitempty"`
	MaxRequestsPerConnection *int `json:"maxRequestsPerConnection,omitempty" yaml:"maxRequestsPerConnection,omitempty"`
}

// HealthCheck is an active health check; exactly one of HTTP, GRPC and TCP.
type HealthCheck struct {
	HTTP               *HTTPHealthCheck `json:"http,omitempty" yaml:"http,omitempty"`
	GRPC               *GRPCHealthCheck `json:"grpc,omitempty" yaml:"grpc,omitempty"`
	TCP                *TCPHealthCheck  `json:"tcp,omitempty" yaml:"tcp,omitempty"`
	Interval           *Duration        `json:"interval,omitempty" yaml:"interval,omitempty"`
	Timeout            *Duration        `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	UnhealthyThreshold *int             `json:"unhealthyThreshold,omitempty" yaml:"unhealthyThreshold,omitempty"`
	HealthyThreshold   *int             `json:"healthyThreshold,omitempty" yaml:"healthyThreshold,omitempty"`
}

// HTTPHealthCheck probes an HTTP path.
type HTTPHealthCheck struct {
	Path             string `json:"path" yaml:"path"`
	ExpectedStatuses []int  `json:"expectedStatuses,omitempty" yaml:"expectedStatuses,omitempty"`
}

// GRPCHealthCheck calls grpc.health.v1.Health/Check.
type GRPCHealthCheck struct {
	ServiceName string `json:"serviceName,omitempty" yaml:"serviceName,omitempty"`
}

// TCPHealthCheck only opens a connection.
type TCPHealthCheck struct{}

// Fallback names the service that takes over when no healthy host is left.
type Fallback struct {
	Service string `json:"service" yaml:"service"`
}

// ChaosExperiment is a time-boxed fault injection for a game day.
type ChaosExperiment struct {
	TypeMeta `json:",inline" yaml:",inline"`
	Metadata Metadata       `json:"metadata" yaml:"metadata"`
	Spec     ExperimentSpec `json:"spec" yaml:"spec"`
	// Status is filled by the server: when the experiment started and ends.
	Status *ExperimentStatus `json:"status,omitempty" yaml:"status,omitempty"`
}

// GetMeta returns the experiment's metadata.
func (e *ChaosExperiment) GetMeta() *Metadata { return &e.Metadata }

// ExperimentSpec is the body of a ChaosExperiment.
type ExperimentSpec struct {
	Target     Target            `json:"target" yaml:"target"`
	Sources    []string          `json:"sources,omitempty" yaml:"sources,omitempty"`
	Headers    map[string]string `json:"headers,omitempty" yaml:"headers,omitempty"`
	Abort      *Abort            `json:"abort,omitempty" yaml:"abort,omitempty"`
	Delay      *Delay            `json:"delay,omitempty" yaml:"delay,omitempty"`
	Duration   *Duration         `json:"duration,omitempty" yaml:"duration,omitempty"`
	Hypothesis string            `json:"hypothesis,omitempty" yaml:"hypothesis,omitempty"`
	// SteadyState measures the hypothesis with Prometheus queries: before
	// the start, every interval while it runs, and for the verdict.
	SteadyState *SteadyState `json:"steadyState,omitempty" yaml:"steadyState,omitempty"`
}

// Abort fails a share of calls with an HTTP or gRPC status.
type Abort struct {
	Percent    float64 `json:"percent" yaml:"percent"`
	HTTPStatus int     `json:"httpStatus,omitempty" yaml:"httpStatus,omitempty"`
	GRPCStatus *int    `json:"grpcStatus,omitempty" yaml:"grpcStatus,omitempty"`
}

// Delay holds a share of calls for a fixed time.
type Delay struct {
	Percent float64  `json:"percent" yaml:"percent"`
	Fixed   Duration `json:"fixed" yaml:"fixed"`
}

// ExperimentStatus records the life of an experiment.
type ExperimentStatus struct {
	StartedAt string `json:"startedAt,omitempty" yaml:"startedAt,omitempty"`
	EndsAt    string `json:"endsAt,omitempty" yaml:"endsAt,omitempty"`
	EndedAt   string `json:"endedAt,omitempty" yaml:"endedAt,omitempty"`
	StartedBy string `json:"startedBy,omitempty" yaml:"startedBy,omitempty"`
	// StoppedBy names who stopped the experiment before it ran out.
	StoppedBy string `json:"stoppedBy,omitempty" yaml:"stoppedBy,omitempty"`
	// Outcome is "running", "expired" or "stopped".
	Outcome string `json:"outcome,omitempty" yaml:"outcome,omitempty"`

	// The steady-state runner's record, for an experiment with
	// spec.steadyState (steadystate.go).
	SteadyStateStatus `json:",inline" yaml:",inline"`
}
