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
		v.duration("timeouts.connect", t.Connect)
		v.duration("timeouts.request", t.Request)
		v.duration("timeouts.idle", t.Idle)
	}
	if r := sp.Retries; r != nil {
		v.retries(r)
	}
	if cb := sp.CircuitBreaker; cb != nil {
		v.count("circuitBreaker.consecutive5xx", cb.Consecutive5xx)
		v.count("circuitBreaker.consecutiveGatewayErrors", cb.ConsecutiveGatewayErrors)
		if fp := cb.FailurePercentage; fp != nil {
			v.count("circuitBreaker.failurePercentage.threshold", fp.Threshold)
			v.count("circuitBreaker.failurePercentage.minimumHosts", fp.MinimumHosts)
			v.count("circuitBreaker.failurePercentage.requestVolume", fp.RequestVolume)
		}
		if sr := cb.SuccessRate; sr != nil {
			v.number("circuitBreaker.successRate.stdevFactor", sr.StdevFactor, "; 1.9 is usual")
			v.count("circuitBreaker.successRate.minimumHosts", sr.MinimumHosts)
			v.count("circuitBreaker.successRate.requestVolume", sr.RequestVolume)
		}
		v.duration("circuitBreaker.interval", cb.Interval)
		v.duration("circuitBreaker.baseEjectionTime", cb.BaseEjectionTime)
		v.count("circuitBreaker.maxEjectionPercent", cb.MaxEjectionPercent)
	}
	if b := sp.Bulkhead; b != nil {
		v.count("bulkhead.maxConnections", b.MaxConnections)
		v.count("bulkhead.maxPendingRequests", b.MaxPendingRequests)
		v.count("bulkhead.maxRequests", b.MaxRequests)
		v.count("bulkhead.maxRetries", b.MaxRetries)
		v.count("bulkhead.maxRequestsPerConnection", b.MaxRequestsPerConnection)
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
	v.count("retries.attempts", r.Attempts)
	v.duration("retries.perTryTimeout", r.PerTryTimeout)
	for i, c := range r.On {
		if !slices.Contains(RetryConditions, c) {
			v.add(fmt.Sprintf("spec.retries.on[%d]", i), "unknown retry condition %q: use one of %s", c, strings.Join(RetryConditions, ", "))
		}
	}
	v.statuses("retries.statusCodes", r.StatusCodes)
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
		v.duration("retries.backoff.base", b.Base)
		v.duration("retries.backoff.max", b.Max)
		if b.Base != nil && b.Max != nil && b.Base.D() > 0 && b.Max.D() > 0 && b.Max.D() < b.Base.D() {
			v.add("spec.retries.backoff.max", "must be >= base (%s)", *b.Base)
		}
	}
	if b := r.Budget; b != nil {
		v.number("retries.budget.percent", b.Percent, "")
		v.count("retries.budget.minConcurrency", b.MinConcurrency)
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
	if g := hc.GRPC; g != nil && strings.ContainsAny(g.ServiceName, " \t\r\n\x00") {
		v.add("spec.healthCheck.grpc.serviceName", "must be a gRPC service name such as pay.v1.Payments, without whitespace (got %q)", g.ServiceName)
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
		v.statuses("healthCheck.http.expectedStatuses", h.ExpectedStatuses)
	}
	v.duration("healthCheck.interval", hc.Interval)
	v.duration("healthCheck.timeout", hc.Timeout)
	v.count("healthCheck.unhealthyThreshold", hc.UnhealthyThreshold)
	v.count("healthCheck.healthyThreshold", hc.HealthyThreshold)
}

// count checks a set integer leaf against its range (bounds.go).
func (v *validator) count(leaf string, n *int) {
	if n != nil {
		if msg := IntBound(leaf).Check(*n); msg != "" {
			v.add("spec."+leaf, "%s", msg)
		}
	}
}

// number checks a set number leaf against its range; hint ends the message.
func (v *validator) number(leaf string, f *float64, hint string) {
	if f != nil {
		if msg := NumberBound(leaf).Check(*f); msg != "" {
			v.add("spec."+leaf, "%s%s", msg, hint)
		}
	}
}

// duration checks a set duration leaf: > 0, at most MaxDuration, or off
// where the leaf allows it.
func (v *validator) duration(leaf string, d *Duration) {
	if d != nil {
		if msg := CheckDuration(*d, OffAllowed(leaf)); msg != "" {
			v.add("spec."+leaf, "%s", msg)
		}
	}
}

// statuses checks each HTTP status of a list leaf.
func (v *validator) statuses(leaf string, codes []int) {
	r := IntBound(leaf)
	for i, c := range codes {
		if c < r.Min || c > r.Max {
			v.add(fmt.Sprintf("spec.%s[%d]", leaf, i), "must be an HTTP status between %d and %d (got %d)", r.Min, r.Max, c)
		}
	}
}

// routeLevel reports whether a route-targeted policy may set field (a leaf
// or a section from setFields).
func routeLevel(field string) bool {
	return slices.ContainsFunc(RouteLevelFields, func(f string) bool {
		return f == field || strings.HasPrefix(f, field+".")
	})
}
