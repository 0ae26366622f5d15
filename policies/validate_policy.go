package policies

import (
	"fmt"
	"slices"
	"strings"
)

// RetryConditions are the values retries.on accepts: Envoy's HTTP retry
// conditions, then the gRPC status conditions.
var RetryConditions = []string{"5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx",
	"refused-stream", "retriable-status-codes", "cancelled", "deadline-exceeded", "internal",
	"resource-exhausted", "unavailable"}

// GRPCRetryConditions are the retry conditions proxyless gRPC clients honour.
var GRPCRetryConditions = []string{"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}

// HTTPMethods are the methods retries.methods accepts.
var HTTPMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// MaxRetryAttempts bounds retries.attempts.
const MaxRetryAttempts = 10

// policy checks a ResiliencePolicy.
func (v *validator) policy(sp *PolicySpec) {
	v.policyTarget(sp.Target)
	v.sources(sp.Sources)

	fields := setFields(sp)
	if len(fields) == 0 {
		v.add("spec", "sets nothing: add at least one of timeouts, retries, circuitBreaker, bulkhead, healthCheck or fallback")
	}
	if sp.Target.Route != nil {
		for _, f := range fields {
			if !routeLevel(f) {
				v.add("spec."+f, "a route-targeted policy may set only %s; move this field to a policy that targets the whole service", strings.Join(RouteLevelFields, ", "))
			}
		}
	}

	if t := sp.Timeouts; t != nil {
		v.positive("spec.timeouts.connect", t.Connect)
		v.positive("spec.timeouts.request", t.Request)
		v.positive("spec.timeouts.idle", t.Idle)
	}
	if r := sp.Retries; r != nil {
		v.retries(r)
	}
	if cb := sp.CircuitBreaker; cb != nil {
		v.atLeast("spec.circuitBreaker.consecutive5xx", cb.Consecutive5xx, 1)
		v.atLeast("spec.circuitBreaker.consecutiveGatewayErrors", cb.ConsecutiveGatewayErrors, 1)
		if fp := cb.FailurePercentage; fp != nil {
			v.between("spec.circuitBreaker.failurePercentage.threshold", fp.Threshold, 0, 100)
			v.atLeast("spec.circuitBreaker.failurePercentage.minimumHosts", fp.MinimumHosts, 1)
			v.atLeast("spec.circuitBreaker.failurePercentage.requestVolume", fp.RequestVolume, 1)
		}
		if sr := cb.SuccessRate; sr != nil {
			if sr.StdevFactor != nil && *sr.StdevFactor <= 0 {
				v.add("spec.circuitBreaker.successRate.stdevFactor", "must be > 0 (got %s); 1.9 is usual", fmtNum(*sr.StdevFactor))
			}
			v.atLeast("spec.circuitBreaker.successRate.minimumHosts", sr.MinimumHosts, 1)
			v.atLeast("spec.circuitBreaker.successRate.requestVolume", sr.RequestVolume, 1)
		}
		v.positive("spec.circuitBreaker.interval", cb.Interval)
		v.positive("spec.circuitBreaker.baseEjectionTime", cb.BaseEjectionTime)
		v.between("spec.circuitBreaker.maxEjectionPercent", cb.MaxEjectionPercent, 0, 100)
	}
	if b := sp.Bulkhead; b != nil {
		v.atLeast("spec.bulkhead.maxConnections", b.MaxConnections, 1)
		v.atLeast("spec.bulkhead.maxPendingRequests", b.MaxPendingRequests, 1)
		v.atLeast("spec.bulkhead.maxRequests", b.MaxRequests, 1)
		v.atLeast("spec.bulkhead.maxRetries", b.MaxRetries, 1)
		v.atLeast("spec.bulkhead.maxRequestsPerConnection", b.MaxRequestsPerConnection, 1)
	}
	if hc := sp.HealthCheck; hc != nil {
		v.healthCheck(hc)
	}
	if f := sp.Fallback; f != nil {
		switch {
		case f.Service == "":
			v.add("spec.fallback.service", "required: the service that takes over when no healthy host is left")
		case !IsDNSLabel(f.Service):
			v.add("spec.fallback.service", "%s", labelMessage(f.Service))
		case f.Service == sp.Target.Service:
			v.add("spec.fallback.service", "must not be the target service itself: name another service, such as %s-static", f.Service)
		}
	}
}

// policyTarget checks that a policy targets exactly one of a service ("*"
// included) or a selector, and a route only below a concrete service.
func (v *validator) policyTarget(t Target) {
	hasService, hasSelector := t.Service != "", len(t.Selector) > 0
	switch {
	case hasService && hasSelector:
		v.add("spec.target", "set exactly one of service or selector, not both")
	case !hasService && !hasSelector:
		v.add("spec.target", `set exactly one of service (a name, or "*" for every service) or selector (labels)`)
	}
	if hasService && t.Service != "*" {
		v.name("spec.target.service", t.Service)
	}
	for _, k := range sortedKeys(t.Selector) {
		v.label("spec.target.selector", k, t.Selector[k])
	}
	if t.Route != nil {
		if !hasService || hasSelector || t.Service == "*" {
			v.add("spec.target.route", `a route narrows one concrete service: set target.service to a service name (not "*" nor a selector)`)
		}
		v.pathPrefix("spec.target.route.pathPrefix", t.Route.PathPrefix)
	}
}

func (v *validator) retries(r *Retries) {
	v.between("spec.retries.attempts", r.Attempts, 0, MaxRetryAttempts)
	v.positive("spec.retries.perTryTimeout", r.PerTryTimeout)
	for i, c := range r.On {
		if !slices.Contains(RetryConditions, c) {
			v.add(fmt.Sprintf("spec.retries.on[%d]", i), "unknown retry condition %q: use one of %s", c, strings.Join(RetryConditions, ", "))
		}
	}
	for i, c := range r.StatusCodes {
		if c < 100 || c > 599 {
			v.add(fmt.Sprintf("spec.retries.statusCodes[%d]", i), "must be an HTTP status between 100 and 599 (got %d)", c)
		}
	}
	for i, m := range r.Methods {
		path := fmt.Sprintf("spec.retries.methods[%d]", i)
		switch {
		case slices.Contains(HTTPMethods, m):
		case slices.Contains(HTTPMethods, strings.ToUpper(m)):
			v.add(path, "methods are upper case: write %q", strings.ToUpper(m))
		default:
			v.add(path, "unknown HTTP method %q: use one of %s", m, strings.Join(HTTPMethods, ", "))
		}
	}
	if b := r.Backoff; b != nil {
		v.positive("spec.retries.backoff.base", b.Base)
		v.positive("spec.retries.backoff.max", b.Max)
		if b.Base != nil && b.Max != nil && b.Base.D() > 0 && b.Max.D() > 0 && b.Max.D() < b.Base.D() {
			v.add("spec.retries.backoff.max", "must be >= base (%s)", *b.Base)
		}
	}
	if b := r.Budget; b != nil {
		if b.Percent != nil && (*b.Percent < 0 || *b.Percent > 100) {
			v.add("spec.retries.budget.percent", "must be between 0 and 100 (got %s)", fmtNum(*b.Percent))
		}
		v.atLeast("spec.retries.budget.minConcurrency", b.MinConcurrency, 0)
	}
}

func (v *validator) healthCheck(hc *HealthCheck) {
	var probes []string
	if hc.HTTP != nil {
		probes = append(probes, "http")
	}
	if hc.GRPC != nil {
		probes = append(probes, "grpc")
	}
	if hc.TCP != nil {
		probes = append(probes, "tcp")
	}
	switch len(probes) {
	case 0:
		v.add("spec.healthCheck", "set exactly one of http, grpc or tcp: how to probe a host")
	case 1:
	default:
		v.add("spec.healthCheck", "set exactly one of http, grpc or tcp (got %s)", strings.Join(probes, " and "))
	}
	if h := hc.HTTP; h != nil {
		switch {
		case h.Path == "":
			v.add("spec.healthCheck.http.path", "required: the path to probe, such as /healthz")
		case !strings.HasPrefix(h.Path, "/"):
			v.add("spec.healthCheck.http.path", `must start with "/" (got %q)`, h.Path)
		case strings.ContainsAny(h.Path, " \t\r\n\x00"):
			v.add("spec.healthCheck.http.path", "must not contain whitespace (got %q)", h.Path)
		}
		for i, s := range h.ExpectedStatuses {
			if s < 100 || s > 599 {
				v.add(fmt.Sprintf("spec.healthCheck.http.expectedStatuses[%d]", i), "must be an HTTP status between 100 and 599 (got %d)", s)
			}
		}
	}
	v.positive("spec.healthCheck.interval", hc.Interval)
	v.positive("spec.healthCheck.timeout", hc.Timeout)
	v.atLeast("spec.healthCheck.unhealthyThreshold", hc.UnhealthyThreshold, 1)
	v.atLeast("spec.healthCheck.healthyThreshold", hc.HealthyThreshold, 1)
}

// routeLevel reports whether a route-targeted policy may set field (a leaf
// or a section from setFields).
func routeLevel(field string) bool {
	return slices.ContainsFunc(RouteLevelFields, func(f string) bool {
		return f == field || strings.HasPrefix(f, field+".")
	})
}
