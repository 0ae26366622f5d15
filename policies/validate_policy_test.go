package policies

import (
	"testing"
)

// routeOnly is the message for a field a route-targeted policy may not set.
const routeOnly = "a route-targeted policy may set only timeouts.request, timeouts.idle, retries.attempts, retries.perTryTimeout, " +
	"retries.on, retries.statusCodes, retries.methods, retries.backoff.base, retries.backoff.max; move this field to a policy that targets the whole service"

func TestValidatePolicy(t *testing.T) {
	runValidate(t, []vcase{
		{name: "valid design example", doc: doc("ResiliencePolicy", "payments", `
  target: {service: payments}
  sources: [checkout]
  timeouts: {connect: 1s, request: 3s, idle: 60s}
  retries:
    attempts: 2
    perTryTimeout: 1s
    on: [5xx, gateway-error, reset, connect-failure, refused-stream, unavailable]
    statusCodes: [503]
    methods: [GET, PUT, DELETE]
    backoff: {base: 25ms, max: 250ms}
    budget: {percent: 20, minConcurrency: 3}
  circuitBreaker:
    consecutive5xx: 5
    consecutiveGatewayErrors: 3
    failurePercentage: {threshold: 50, minimumHosts: 3, requestVolume: 20}
    successRate: {stdevFactor: 1.9, minimumHosts: 3, requestVolume: 100}
    interval: 10s
    baseEjectionTime: 30s
    maxEjectionPercent: 50
  bulkhead: {maxConnections: 100, maxPendingRequests: 50, maxRequests: 200, maxRetries: 3, maxRequestsPerConnection: 1000}
  healthCheck:
    http: {path: /health/ready, expectedStatuses: [200]}
    interval: 5s
    timeout: 1s
    unhealthyThreshold: 3
    healthyThreshold: 2
  fallback: {service: payments-static}`)},
		{name: "valid mesh default", doc: doc("ResiliencePolicy", "mesh", `{target: {service: "*"}, timeouts: {request: 3s}}`)},
		{name: "valid selector with an empty section (defaults)", doc: doc("ResiliencePolicy", "crit", `{target: {selector: {tier: critical}}, circuitBreaker: {}}`)},
		{name: "valid route policy", doc: doc("ResiliencePolicy", "charge", `
  target: {service: payments, route: {pathPrefix: /charge}}
  sources: [checkout]
  timeouts: {request: 1s, idle: 5m}
  retries: {attempts: 0, perTryTimeout: 1s, on: [5xx], statusCodes: [503], methods: [GET], backoff: {base: 10ms, max: 10ms}}`)},
		{name: "valid route policy with an empty retries section", doc: doc("ResiliencePolicy", "charge", `{target: {service: payments, route: {pathPrefix: /charge}}, retries: {}}`)},
		{name: "valid grpc and tcp probes", doc: doc("ResiliencePolicy", "hc", `{target: {service: payments}, healthCheck: {grpc: {serviceName: pay.v1.Payments}}}`)},
		{name: "target names nothing", doc: doc("ResiliencePolicy", "p", `{target: {}, timeouts: {request: 1s}}`), want: Violations{
			{Field: "spec.target", Message: `set exactly one of service (a name, or "*" for every service) or selector (labels)`},
		}},
		{name: "service and selector, route on both", doc: doc("ResiliencePolicy", "p", `
  target: {service: payments, selector: {tier: critical}, route: {pathPrefix: charge}}
  timeouts: {request: 1s}`), want: Violations{
			{Field: "spec.target", Message: "set exactly one of service or selector, not both"},
			{Field: "spec.target.route", Message: `a route narrows one concrete service: set target.service to a service name (not "*" nor a selector)`},
			{Field: "spec.target.route.pathPrefix", Message: `must start with "/" (got "charge")`},
		}},
		{name: "route on the mesh default", doc: doc("ResiliencePolicy", "p", `{target: {service: "*", route: {pathPrefix: /}}, timeouts: {request: 1s}}`), want: Violations{
			{Field: "spec.target.route", Message: `a route narrows one concrete service: set target.service to a service name (not "*" nor a selector)`},
			{Field: "spec.target.route.pathPrefix", Message: `"/" is the whole service: drop target.route instead`},
		}},
		{name: "route on a selector, query in prefix", doc: doc("ResiliencePolicy", "p", `{target: {selector: {tier: x}, route: {pathPrefix: "/a?b"}}, timeouts: {request: 1s}}`), want: Violations{
			{Field: "spec.target.route", Message: `a route narrows one concrete service: set target.service to a service name (not "*" nor a selector)`},
			{Field: "spec.target.route.pathPrefix", Message: `must be a plain path without query, fragment or whitespace (got "/a?b")`},
		}},
		{name: "bad names", doc: doc("ResiliencePolicy", "p", `
  target: {service: Payments}
  sources: [checkout, checkout, Web]
  fallback: {service: payments-static}`), want: Violations{
			{Field: "spec.target.service", Message: lbl("Payments")},
			{Field: "spec.sources[1]", Message: `"checkout" is listed twice (first at spec.sources[0])`},
			{Field: "spec.sources[2]", Message: lbl("Web")},
		}},
		{name: "bad selector", doc: doc("ResiliencePolicy", "p", `{target: {selector: {"-tier": "x y"}}, bulkhead: {maxRequests: 1}}`), want: Violations{
			{Field: "spec.target.selector.-tier", Message: `invalid label key "-tier": use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit, after an optional prefix/`},
			{Field: "spec.target.selector.-tier", Message: `invalid label value "x y": use letters, digits, '-', '_' and '.', starting and ending with a letter or digit`},
		}},
		{name: "sets nothing", doc: doc("ResiliencePolicy", "p", `{target: {service: payments}, sources: [checkout]}`), want: Violations{
			{Field: "spec", Message: "sets nothing: add at least one of timeouts, retries, circuitBreaker, bulkhead, healthCheck or fallback"},
		}},
		{name: "route policy sets cluster-level fields", doc: doc("ResiliencePolicy", "p", `
  target: {service: payments, route: {pathPrefix: /charge}}
  timeouts: {connect: 1s, request: 2s}
  retries: {attempts: 2, budget: {percent: 20}}
  circuitBreaker: {}
  bulkhead: {maxRequests: 10}
  healthCheck: {tcp: {}}
  fallback: {service: static}`), want: Violations{
			{Field: "spec.timeouts.connect", Message: routeOnly},
			{Field: "spec.retries.budget.percent", Message: routeOnly},
			{Field: "spec.circuitBreaker", Message: routeOnly},
			{Field: "spec.bulkhead.maxRequests", Message: routeOnly},
			{Field: "spec.healthCheck.tcp", Message: routeOnly},
			{Field: "spec.fallback.service", Message: routeOnly},
		}},
		{name: "timeouts not positive", doc: doc("ResiliencePolicy", "p", `{target: {service: "*"}, timeouts: {connect: 0s, request: -1s, idle: 1m}}`), want: Violations{
			{Field: "spec.timeouts.connect", Message: "must be > 0 (got 0s)"},
			{Field: "spec.timeouts.request", Message: "must be > 0 (got -1s); write off for no timeout"},
		}},
		{name: "retries wrong everywhere", doc: doc("ResiliencePolicy", "p", `
  target: {service: payments}
  retries:
    attempts: 11
    perTryTimeout: 0s
    on: [5xx, server-error, unavailable]
    statusCodes: [503, 99, 600]
    methods: [GET, post, FETCH]
    backoff: {base: 25ms, max: 10ms}
    budget: {percent: 120, minConcurrency: -1}`), want: Violations{
			{Field: "spec.retries.attempts", Message: "must be between 0 and 10 (got 11)"},
			{Field: "spec.retries.perTryTimeout", Message: "must be > 0 (got 0s); write off for no timeout"},
			{Field: "spec.retries.on[1]", Message: `unknown retry condition "server-error": use one of 5xx, gateway-error, reset, connect-failure, retriable-4xx, refused-stream, retriable-status-codes, cancelled, deadline-exceeded, internal, resource-exhausted, unavailable`},
			{Field: "spec.retries.statusCodes[1]", Message: "must be an HTTP status between 100 and 599 (got 99)"},
			{Field: "spec.retries.statusCodes[2]", Message: "must be an HTTP status between 100 and 599 (got 600)"},
			{Field: "spec.retries.methods[1]", Message: `methods are upper case: write "POST"`},
			{Field: "spec.retries.methods[2]", Message: `unknown HTTP method "FETCH": use one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH`},
			{Field: "spec.retries.backoff.max", Message: "must be >= base (25ms)"},
			{Field: "spec.retries.budget.percent", Message: "must be between 0 and 100 (got 120)"},
			{Field: "spec.retries.budget.minConcurrency", Message: "must be at least 0 (got -1)"},
		}},
		{name: "negative attempts, zero backoff", doc: doc("ResiliencePolicy", "p", `{target: {service: payments}, retries: {attempts: -1, backoff: {base: 0s, max: 0s}}}`), want: Violations{
			{Field: "spec.retries.attempts", Message: "must be between 0 and 10 (got -1)"},
			{Field: "spec.retries.backoff.base", Message: "must be > 0 (got 0s)"},
			{Field: "spec.retries.backoff.max", Message: "must be > 0 (got 0s)"},
		}},
		{name: "circuit breaker out of range", doc: doc("ResiliencePolicy", "p", `
  target: {service: payments}
  circuitBreaker:
    consecutive5xx: 0
    consecutiveGatewayErrors: -1
    failurePercentage: {threshold: 101, minimumHosts: 0, requestVolume: 0}
    successRate: {stdevFactor: 0, minimumHosts: 0, requestVolume: 0}
    interval: 0s
    baseEjectionTime: -5s
    maxEjectionPercent: 101`), want: Violations{
			{Field: "spec.circuitBreaker.consecutive5xx", Message: "must be at least 1 (got 0)"},
			{Field: "spec.circuitBreaker.consecutiveGatewayErrors", Message: "must be at least 1 (got -1)"},
			{Field: "spec.circuitBreaker.failurePercentage.threshold", Message: "must be between 0 and 100 (got 101)"},
			{Field: "spec.circuitBreaker.failurePercentage.minimumHosts", Message: "must be at least 1 (got 0)"},
			{Field: "spec.circuitBreaker.failurePercentage.requestVolume", Message: "must be at least 1 (got 0)"},
			{Field: "spec.circuitBreaker.successRate.stdevFactor", Message: "must be between 0.001 and 4294967.295 (got 0); 1.9 is usual"},
			{Field: "spec.circuitBreaker.successRate.minimumHosts", Message: "must be at least 1 (got 0)"},
			{Field: "spec.circuitBreaker.successRate.requestVolume", Message: "must be at least 1 (got 0)"},
			{Field: "spec.circuitBreaker.interval", Message: "must be > 0 (got 0s)"},
			{Field: "spec.circuitBreaker.baseEjectionTime", Message: "must be > 0 (got -5s)"},
			{Field: "spec.circuitBreaker.maxEjectionPercent", Message: "must be between 0 and 100 (got 101)"},
		}},
		{name: "bulkhead below one", doc: doc("ResiliencePolicy", "p", `
  target: {service: payments}
  bulkhead: {maxConnections: 0, maxPendingRequests: 0, maxRequests: 0, maxRetries: 0, maxRequestsPerConnection: 0}`), want: Violations{
			{Field: "spec.bulkhead.maxConnections", Message: "must be at least 1 (got 0)"},
			{Field: "spec.bulkhead.maxPendingRequests", Message: "must be at least 1 (got 0)"},
			{Field: "spec.bulkhead.maxRequests", Message: "must be at least 1 (got 0)"},
			{Field: "spec.bulkhead.maxRequestsPerConnection", Message: "must be at least 1 (got 0)"},
		}},
		{name: "health check with two probes", doc: doc("ResiliencePolicy", "p", `
  target: {service: payments}
  healthCheck: {http: {path: health, expectedStatuses: [200, 700]}, tcp: {}, interval: 0s, timeout: 0s, unhealthyThreshold: 0, healthyThreshold: 0}`), want: Violations{
			{Field: "spec.healthCheck", Message: "set exactly one of http, grpc or tcp (got http and tcp)"},
			{Field: "spec.healthCheck.http.path", Message: `must start with "/" (got "health")`},
			{Field: "spec.healthCheck.http.expectedStatuses[1]", Message: "must be an HTTP status between 100 and 599 (got 700)"},
			{Field: "spec.healthCheck.interval", Message: "must be > 0 (got 0s)"},
			{Field: "spec.healthCheck.timeout", Message: "must be > 0 (got 0s)"},
			{Field: "spec.healthCheck.unhealthyThreshold", Message: "must be at least 1 (got 0)"},
			{Field: "spec.healthCheck.healthyThreshold", Message: "must be at least 1 (got 0)"},
		}},
		{name: "health check without a probe", doc: doc("ResiliencePolicy", "p", `{target: {service: payments}, healthCheck: {interval: 5s}}`), want: Violations{
			{Field: "spec.healthCheck", Message: "set exactly one of http, grpc or tcp: how to probe a host"},
		}},
		{name: "http probe without a path", doc: doc("ResiliencePolicy", "p", `{target: {service: payments}, healthCheck: {http: {}}}`), want: Violations{
			{Field: "spec.healthCheck.http.path", Message: "required: the path to probe, such as /healthz"},
		}},
		{name: "fallback to itself", doc: doc("ResiliencePolicy", "p", `{target: {service: payments}, fallback: {service: payments}}`), want: Violations{
			{Field: "spec.fallback.service", Message: "must not be the target service itself: name another service, such as payments-static"},
		}},
		{name: "fallback without a service", doc: doc("ResiliencePolicy", "p", `{target: {service: payments}, fallback: {}}`), want: Violations{
			{Field: "spec.fallback.service", Message: "required: the service that takes over when no healthy host is left"},
		}},
		{name: "fallback to every service", doc: doc("ResiliencePolicy", "p", `{target: {service: payments}, fallback: {service: "*"}}`), want: Violations{
			{Field: "spec.fallback.service", Message: lbl("*")},
		}},
	})
}
