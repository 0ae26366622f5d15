package ir

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/bulwarkmesh/bulwark/policies"
)

// FieldError is one broken invariant of the IR, located by its path
// ("services[payments].routes[0].retry.backoffMax").
type FieldError struct {
	Path    string
	Message string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Message }

// DefaultRoute is the path prefix of the route that matches every request.
const DefaultRoute = "/"

// FallbackSuffix ends the name of the aggregate cluster that puts a
// service's fallback behind it. "~" cannot appear in a service name.
const FallbackSuffix = "~fallback"

// MaxWeight bounds the sum of endpoint weights of a service (uint32 in xDS).
const MaxWeight = math.MaxUint32

// RetryConditions are the retry_on values Envoy understands; the last five
// are the gRPC status conditions, the only ones proxyless gRPC honours.
var RetryConditions = []string{"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
	"envoy-ratelimited", "retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
	"http3-post-connect-failure", "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}

// GRPCRetryConditions are the retry conditions proxyless gRPC honours.
var GRPCRetryConditions = policies.GRPCRetryConditions

// checker collects field errors.
type checker struct{ errs []error }

func (c *checker) add(path, format string, args ...any) {
	c.errs = append(c.errs, &FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

// at joins a base path and a field; the checks call it only on error, so
// that a valid IR costs no string building.
func at(base, field string) string {
	if field == "" {
		return base
	}
	return base + "." + field
}

func (c *checker) err() error { return errors.Join(c.errs...) }

// ValidateGroup checks the group-level fields translation relies on: the
// flavor and, for Envoy, the outbound listener's address. Validate checks
// these and every service.
func (x *Xds) ValidateGroup() error {
	if x == nil {
		return errors.New("nil IR")
	}
	c := &checker{}
	switch x.Flavor {
	case FlavorEnvoy:
		if _, err := netip.ParseAddr(x.Outbound.Host); err != nil {
			c.add("outbound.host", "must be an IP address, got %q", x.Outbound.Host)
		}
		checkPort(c, "outbound", "port", x.Outbound.Port)
	case FlavorGRPC:
	default:
		c.add("flavor", "must be %q or %q, got %q", FlavorEnvoy, FlavorGRPC, x.Flavor)
	}
	return c.err()
}

// Validate checks every invariant translation relies on: the group fields,
// each service, unique service names, and fallbacks that name a service of
// the group. All broken invariants are reported at once, joined.
func (x *Xds) Validate() error {
	if x == nil {
		return errors.New("nil IR")
	}
	errs := []error{x.ValidateGroup()}
	seen := make(map[string]bool, len(x.Services))
	for i, s := range x.Services {
		if s == nil {
			errs = append(errs, &FieldError{Path: fmt.Sprintf("services[%d]", i), Message: "must not be null"})
			continue
		}
		errs = append(errs, s.Validate())
		if seen[s.Name] {
			errs = append(errs, &FieldError{Path: ServicePath(s.Name), Message: "duplicate service name"})
		}
		seen[s.Name] = true
	}
	for _, s := range x.Services {
		if s != nil && s.Fallback != "" && s.Fallback != s.Name && !seen[s.Fallback] {
			errs = append(errs, &FieldError{Path: ServicePath(s.Name) + ".fallback", Message: fmt.Sprintf("service %q is not part of this group", s.Fallback)})
		}
	}
	return errors.Join(errs...)
}

// ServicePath is the field path of a service: services[name].
func ServicePath(name string) string { return "services[" + name + "]" }

// Validate checks the invariants of one service on its own; fallbacks that
// must exist in the group are checked by Xds.Validate. Paths start with
// services[name].
func (s *Service) Validate() error {
	if s == nil {
		return errors.New("nil service")
	}
	c := &checker{}
	p := ServicePath(s.Name)
	if err := CheckName(s.Name); err != nil {
		c.add(p+".name", "%v", err)
	}
	switch s.Protocol {
	case policies.ProtocolHTTP, policies.ProtocolHTTP2, policies.ProtocolGRPC:
	default:
		c.add(p+".protocol", "must be http, http2 or grpc, got %q", s.Protocol)
	}
	checkPort(c, p, "port", s.Port)
	if s.DNS != "" && len(s.Endpoints) > 0 {
		c.add(p+".dns", "exclusive with endpoints: set one of them")
	}
	if s.DNS != "" {
		host, port, err := net.SplitHostPort(s.DNS)
		if err != nil || host == "" {
			c.add(p+".dns", "must be host:port, got %q", s.DNS)
		} else if n, err := strconv.Atoi(port); err != nil {
			c.add(p+".dns", "port must be a number, got %q", port)
		} else {
			checkPort(c, p, "dns", n)
		}
	}
	checkEndpoints(c, p, s.Endpoints)
	checkCluster(c, p+".cluster", &s.Cluster)
	if hc := s.Cluster.HealthCheck; hc != nil && hc.GRPC != nil && s.Protocol == policies.ProtocolHTTP {
		c.add(p+".cluster.healthCheck.grpc", "needs protocol http2 or grpc (gRPC health checks speak HTTP/2), got %s", s.Protocol)
	}
	if s.Fallback != "" {
		if s.Fallback == s.Name {
			c.add(p+".fallback", "a service cannot fall back to itself")
		} else if err := CheckName(s.Fallback); err != nil {
			c.add(p+".fallback", "%v", err)
		}
	}
	checkRoutes(c, p, s.Routes)
	return c.err()
}

// IsHostname reports whether s is an RFC 1123 hostname (not an IP address).
func IsHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			ch := label[i] | 0x20 // lower case
			if !(ch >= 'a' && ch <= 'z') && !(label[i] >= '0' && label[i] <= '9') && label[i] != '-' {
				return false
			}
		}
	}
	return true
}

// HasHostnames reports whether any endpoint of the service is a hostname
// rather than an IP address.
func (s *Service) HasHostnames() bool {
	for _, ep := range s.Endpoints {
		if _, err := netip.ParseAddr(ep.Address); err != nil {
			return true
		}
	}
	return false
}

// CheckName reports whether name is a DNS-1123 label, the form of every
// service name.
func CheckName(name string) error {
	if name == "" {
		return errors.New("required")
	}
	if len(name) > 63 {
		return fmt.Errorf("%q is longer than 63 characters", name)
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		alnum := (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
		if !alnum && (ch != '-' || i == 0 || i == len(name)-1) {
			return fmt.Errorf("%q is not a DNS-1123 label (lower-case letters, digits and inner '-')", name)
		}
	}
	return nil
}

func checkPort(c *checker, base, field string, port int) {
	if port < 1 || port > 65535 {
		c.add(at(base, field), "must be a port between 1 and 65535, got %d", port)
	}
}

func checkEndpoints(c *checker, p string, eps []Endpoint) {
	var total uint64
	ip := func(i int) string { return p + ".endpoints[" + strconv.Itoa(i) + "]" }
	type hostPort struct {
		addr string
		port int
	}
	var seen map[hostPort]int // for long lists; short ones compare pairwise
	if len(eps) > 16 {
		seen = make(map[hostPort]int, len(eps))
	}
	for i, ep := range eps {
		addr, err := netip.ParseAddr(ep.Address)
		switch {
		case err == nil && addr.IsUnspecified():
			c.add(ip(i)+".address", "%s is not an address a proxy can connect to", ep.Address)
		case err != nil && !IsHostname(ep.Address):
			c.add(ip(i)+".address", "must be an IP address or a hostname, got %q", ep.Address)
		}
		if ep.Port < 1 || ep.Port > 65535 {
			checkPort(c, ip(i), "port", ep.Port)
		}
		if ep.Weight < 1 {
			c.add(ip(i)+".weight", "must be at least 1, got %d", ep.Weight)
		} else {
			total += uint64(ep.Weight)
		}
		if seen != nil {
			if j, dup := seen[hostPort{ep.Address, ep.Port}]; dup {
				c.add(ip(i), "duplicate of endpoints[%d] (%s)", j, net.JoinHostPort(ep.Address, strconv.Itoa(ep.Port)))
			} else {
				seen[hostPort{ep.Address, ep.Port}] = i
			}
			continue
		}
		for j := 0; j < i; j++ {
			if eps[j].Port == ep.Port && eps[j].Address == ep.Address {
				c.add(ip(i), "duplicate of endpoints[%d] (%s)", j, net.JoinHostPort(ep.Address, strconv.Itoa(ep.Port)))
				break
			}
		}
	}
	if total > MaxWeight {
		c.add(p+".endpoints", "the sum of weights %d exceeds %d", total, uint64(MaxWeight))
	}
}

// bounded checks a set integer against the range the policy layer gives
// leaf (policies.IntBound), so that the two layers accept the same values.
func bounded(c *checker, base, field string, v *int, leaf string) {
	if v != nil {
		boundedInt(c, at(base, field), *v, leaf)
	}
}

func boundedInt(c *checker, path string, v int, leaf string) {
	if r := policies.IntBound(leaf); v < r.Min || v > r.Max {
		c.add(path, "must be %sbetween %d and %d, got %d", rangeNoun(float64(r.Min), float64(r.Max)), r.Min, r.Max, v)
	}
}

// boundedNumber checks a set number against the policy layer's range for leaf.
func boundedNumber(c *checker, path string, v *float64, leaf string) {
	if v != nil {
		if r := policies.NumberBound(leaf); *v < r.Min || *v > r.Max {
			c.add(path, "must be %sbetween %s and %s, got %s", rangeNoun(r.Min, r.Max), num(r.Min), num(r.Max), num(*v))
		}
	}
}

// rangeNoun names what a range holds, for a message: a percentage, an HTTP
// status, or nothing in particular.
func rangeNoun(lo, hi float64) string {
	switch {
	case lo == 0 && hi == 100:
		return "a percentage "
	case lo == 100 && hi == 599:
		return "an HTTP status "
	}
	return ""
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func positive(c *checker, base, field string, d *policies.Duration) {
	if d != nil {
		checkDuration(c, base, field, *d, true)
	}
}

// checkDuration rejects negative (or, when strict, zero) durations and those
// past policies.MaxDuration. Off never reaches the IR: resolve writes a
// switched-off route timeout as 0s and drops a switched-off per-try timeout.
func checkDuration(c *checker, base, field string, d policies.Duration, strict bool) {
	switch {
	case d.IsOff():
		c.add(at(base, field), "off is not an IR value: write 0s for no timeout (route timeouts only)")
	case d < 0 || (strict && d == 0):
		if strict {
			c.add(at(base, field), "must be greater than 0, got %s", d)
		} else {
			c.add(at(base, field), "must not be negative, got %s", d)
		}
	case d.D() > policies.MaxDuration:
		c.add(at(base, field), "%s is out of range", d)
	case d > 0 && (d.D() < time.Millisecond || d.D()%time.Millisecond != 0):
		// Envoy truncates to milliseconds: 500us would become 0, no timeout.
		c.add(at(base, field), "must be a whole number of milliseconds, at least 1ms, got %s", d)
	}
}

func checkCluster(c *checker, p string, cl *ClusterPolicy) {
	positive(c, p, "connectTimeout", cl.ConnectTimeout)
	if cb := cl.CircuitBreaker; cb != nil {
		q := p + ".circuitBreaker"
		bounded(c, q, "consecutive5xx", cb.Consecutive5xx, "circuitBreaker.consecutive5xx")
		bounded(c, q, "consecutiveGatewayErrors", cb.ConsecutiveGatewayErrors, "circuitBreaker.consecutiveGatewayErrors")
		positive(c, q, "interval", cb.Interval)
		positive(c, q, "baseEjectionTime", cb.BaseEjectionTime)
		bounded(c, q, "maxEjectionPercent", cb.MaxEjectionPercent, "circuitBreaker.maxEjectionPercent")
		if fp := cb.FailurePercentage; fp != nil {
			bounded(c, q, "failurePercentage.threshold", fp.Threshold, "circuitBreaker.failurePercentage.threshold")
			bounded(c, q, "failurePercentage.minimumHosts", fp.MinimumHosts, "circuitBreaker.failurePercentage.minimumHosts")
			bounded(c, q, "failurePercentage.requestVolume", fp.RequestVolume, "circuitBreaker.failurePercentage.requestVolume")
		}
		if sr := cb.SuccessRate; sr != nil {
			// Envoy reads the factor in thousandths: 1.9 is sent as 1900.
			boundedNumber(c, q+".successRate.stdevFactor", sr.StdevFactor, "circuitBreaker.successRate.stdevFactor")
			bounded(c, q, "successRate.minimumHosts", sr.MinimumHosts, "circuitBreaker.successRate.minimumHosts")
			bounded(c, q, "successRate.requestVolume", sr.RequestVolume, "circuitBreaker.successRate.requestVolume")
		}
	}
	if b := cl.Bulkhead; b != nil {
		q := p + ".bulkhead"
		bounded(c, q, "maxConnections", b.MaxConnections, "bulkhead.maxConnections")
		bounded(c, q, "maxPendingRequests", b.MaxPendingRequests, "bulkhead.maxPendingRequests")
		bounded(c, q, "maxRequests", b.MaxRequests, "bulkhead.maxRequests")
		bounded(c, q, "maxRetries", b.MaxRetries, "bulkhead.maxRetries")
		bounded(c, q, "maxRequestsPerConnection", b.MaxRequestsPerConnection, "bulkhead.maxRequestsPerConnection")
	}
	if rb := cl.RetryBudget; rb != nil {
		q := p + ".retryBudget"
		boundedNumber(c, q+".percent", rb.Percent, "retries.budget.percent")
		bounded(c, q, "minConcurrency", rb.MinConcurrency, "retries.budget.minConcurrency")
	}
	if hc := cl.HealthCheck; hc != nil {
		checkHealthCheck(c, p+".healthCheck", hc)
	}
}

func checkHealthCheck(c *checker, q string, hc *policies.HealthCheck) {
	probes := 0
	if hc.HTTP != nil {
		probes++
		if !strings.HasPrefix(hc.HTTP.Path, "/") {
			c.add(q+".http.path", "must start with /, got %q", hc.HTTP.Path)
		}
		for i, st := range hc.HTTP.ExpectedStatuses {
			boundedInt(c, fmt.Sprintf("%s.http.expectedStatuses[%d]", q, i), st, "healthCheck.http.expectedStatuses")
		}
	}
	if hc.GRPC != nil {
		probes++
	}
	if hc.TCP != nil {
		probes++
	}
	if probes != 1 {
		c.add(q, "set exactly one of http, grpc and tcp, got %d", probes)
	}
	if hc.Interval == nil {
		c.add(q+".interval", "required")
	}
	if hc.Timeout == nil {
		c.add(q+".timeout", "required")
	}
	positive(c, q, "interval", hc.Interval)
	positive(c, q, "timeout", hc.Timeout)
	if hc.UnhealthyThreshold == nil {
		c.add(q+".unhealthyThreshold", "required")
	}
	if hc.HealthyThreshold == nil {
		c.add(q+".healthyThreshold", "required")
	}
	bounded(c, q, "unhealthyThreshold", hc.UnhealthyThreshold, "healthCheck.unhealthyThreshold")
	bounded(c, q, "healthyThreshold", hc.HealthyThreshold, "healthCheck.healthyThreshold")
}
