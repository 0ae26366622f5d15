// Package ir is Bulwark's intermediate representation: the resolved,
// defaulted configuration one proxy group receives, before it becomes Envoy
// or gRPC resources. Resolve produces it; translate consumes it. It can be
// written by hand in YAML (Decode), so translation is tested on its own.
// Validate checks every invariant translation relies on.
//
// An IR is read-only once built: resolve shares leaf values (durations,
// lists) with the policies it merged, and translate never copies it.
package ir

import "github.com/bulwarkmesh/bulwark/policies"

// Flavor is the kind of data plane a group runs.
type Flavor string

// Flavors.
const (
	// FlavorEnvoy is an Envoy sidecar: one outbound listener with RDS "outbound".
	FlavorEnvoy Flavor = "envoy"
	// FlavorGRPC is a proxyless gRPC client: one API listener per service.
	FlavorGRPC Flavor = "grpc"
)

// Xds is everything one proxy group (flavor, source service) receives.
type Xds struct {
	Flavor Flavor `json:"flavor" yaml:"flavor"`
	// Source is the calling service ("" when the proxies name none).
	Source string `json:"source,omitempty" yaml:"source,omitempty"`
	// Outbound is the Envoy outbound listener's address; unused for gRPC.
	Outbound Address `json:"outbound,omitempty" yaml:"outbound,omitempty"`
	// Services are the services this group may call, sorted by name.
	Services []*Service `json:"services" yaml:"services"`
}

// Address is a socket address.
type Address struct {
	Host string `json:"host,omitempty" yaml:"host,omitempty"`
	Port int    `json:"port,omitempty" yaml:"port,omitempty"`
}

// Service is one upstream with its effective resilience settings.
type Service struct {
	Name     string `json:"name" yaml:"name"`
	Protocol string `json:"protocol" yaml:"protocol"`
	Port     int    `json:"port" yaml:"port"`
	// Endpoints are static and self-registered instances; exclusive with DNS.
	Endpoints []Endpoint `json:"endpoints,omitempty" yaml:"endpoints,omitempty"`
	// DNS is host:port resolved by the proxy.
	DNS string `json:"dns,omitempty" yaml:"dns,omitempty"`
	// Cluster holds the settings that live on the upstream cluster.
	Cluster ClusterPolicy `json:"cluster" yaml:"cluster"`
	// Fallback names the service used when no healthy host is left.
	Fallback string `json:"fallback,omitempty" yaml:"fallback,omitempty"`
	// Routes are ordered most specific first; the default route ("/") is last.
	Routes []*Route `json:"routes" yaml:"routes"`
}

// Endpoint is one host of a service.
type Endpoint struct {
	Address string `json:"address" yaml:"address"`
	Port    int    `json:"port" yaml:"port"`
	Zone    string `json:"zone,omitempty" yaml:"zone,omitempty"`
	Weight  int    `json:"weight" yaml:"weight"`
}

// ClusterPolicy are the cluster-level settings, defaults applied.
type ClusterPolicy struct {
	ConnectTimeout *policies.Duration       `json:"connectTimeout,omitempty" yaml:"connectTimeout,omitempty"`
	CircuitBreaker *policies.CircuitBreaker `json:"circuitBreaker,omitempty" yaml:"circuitBreaker,omitempty"`
	Bulkhead       *policies.Bulkhead       `json:"bulkhead,omitempty" yaml:"bulkhead,omitempty"`
	RetryBudget    *policies.Budget         `json:"retryBudget,omitempty" yaml:"retryBudget,omitempty"`
	HealthCheck    *policies.HealthCheck    `json:"healthCheck,omitempty" yaml:"healthCheck,omitempty"`
}

// Route is one route of a service with its route-level settings.
type Route struct {
	// PathPrefix matches the request path; "/" is the default route.
	PathPrefix string `json:"pathPrefix" yaml:"pathPrefix"`
	// Timeout and IdleTimeout are timeouts.request and timeouts.idle: unset
	// leaves the data plane's default, 0s is "no timeout" (a policy's off).
	Timeout     *policies.Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`
	IdleTimeout *policies.Duration `json:"idleTimeout,omitempty" yaml:"idleTimeout,omitempty"`
	// Retry is nil when nobody configured retries. Budget is on the cluster.
	Retry *Retry `json:"retry,omitempty" yaml:"retry,omitempty"`
	// Fault is the chaos experiment in force on this route, if any.
	Fault *Fault `json:"fault,omitempty" yaml:"fault,omitempty"`
}

// Retry is a route's retry policy, defaults applied.
type Retry struct {
	Attempts      int                `json:"attempts" yaml:"attempts"`
	PerTryTimeout *policies.Duration `json:"perTryTimeout,omitempty" yaml:"perTryTimeout,omitempty"`
	On            []string           `json:"on,omitempty" yaml:"on,omitempty"`
	StatusCodes   []int              `json:"statusCodes,omitempty" yaml:"statusCodes,omitempty"`
	Methods       []string           `json:"methods,omitempty" yaml:"methods,omitempty"`
	BackoffBase   policies.Duration  `json:"backoffBase" yaml:"backoffBase"`
	BackoffMax    policies.Duration  `json:"backoffMax" yaml:"backoffMax"`
}

// Fault is an injected fault from a chaos experiment.
type Fault struct {
	Experiment string            `json:"experiment" yaml:"experiment"`
	Headers    map[string]string `json:"headers,omitempty" yaml:"headers,omitempty"`
	Abort      *policies.Abort   `json:"abort,omitempty" yaml:"abort,omitempty"`
	Delay      *policies.Delay   `json:"delay,omitempty" yaml:"delay,omitempty"`
}
