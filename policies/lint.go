package policies

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Severity ranks a lint finding.
type Severity string

// Severities, most serious first.
const (
	// SeverityError: the configuration does not do what it says (a fallback
	// that does not exist, a cycle, a conflict).
	SeverityError Severity = "error"
	// SeverityWarning: legal, but probably wrong.
	SeverityWarning Severity = "warning"
	// SeverityInfo: worth knowing, often fine.
	SeverityInfo Severity = "info"
)

// Finding is one lint result, reported against the resource that should
// change (kind and name) and, when there is one, its field.
type Finding struct {
	Severity Severity `json:"severity"`
	Kind     string   `json:"kind"`
	Name     string   `json:"name"`
	Field    string   `json:"field,omitempty"`
	Message  string   `json:"message"`
}

func (f Finding) String() string {
	where := f.Kind + " " + f.Name
	if f.Field != "" {
		where += ": " + f.Field
	}
	return fmt.Sprintf("%s: %s: %s", f.Severity, where, f.Message)
}

// HasErrors reports whether any finding is an error.
func HasErrors(fs []Finding) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.Severity == SeverityError })
}

// Lint checks a whole set for what is legal but probably wrong, and for what
// only the whole set can reveal (missing fallbacks, cycles, conflicts). Rules
// about calls look at the merged, defaulted settings of every (source,
// service, route) and report against the policy that provides the offending
// field. Findings are deduplicated and sorted by kind, name, field and
// message. Lint expects resources that passed Validate but does not fail on
// others.
//
// The rules:
//   - retries whose worst-case last try (attempts × perTryTimeout plus the
//     longest backoff waits) starts at or past timeouts.request (warning);
//   - two or more retries without a budget, a retry storm (warning); a budget
//     that no route of the service spends, or with no retries configured (warning);
//   - retrying 5xx, gateway-error, retriable-status-codes or a 5xx status code
//     without retries.methods, on a service that is not gRPC (warning);
//   - healthCheck.timeout at or above its interval (warning);
//     maxEjectionPercent 100 without a fallback (warning);
//   - a fallback service that does not exist, or fallbacks in a cycle (error);
//   - a chaos experiment whose callers have no request timeout or no fallback
//     (warning), or that another experiment shadows on the same calls (warning);
//   - fields proxyless gRPC clients ignore (warning when the policy applies to a
//     gRPC service, info otherwise);
//   - a service whose calls have no request timeout (warning); a request
//     timeout switched off is deliberate: no warning, an info finding on the
//     policy that switches it off;
//   - conflicts of equal specificity (error, against each losing policy);
//   - a source a small edit away from a service but not one itself (error: a
//     typo, the resource applies to no caller it meant);
//   - a target or dependency that does not exist (warning), a selector that
//     matches no service (info).
func Lint(s *Set) []Finding {
	l := &linter{s: s, seen: map[Finding]bool{}, fallbackEdges: map[string]map[string]edge{}, experimentsOn: map[string][]*ChaosExperiment{}}
	for _, name := range sortedKeys(s.Experiments) {
		e := s.Experiments[name]
		l.experimentsOn[e.Spec.Target.Service] = append(l.experimentsOn[e.Spec.Target.Service], e)
	}
	l.calls()
	l.targets()
	l.missingFallbacks()
	l.fallbackCycles()
	l.flavors()
	l.conflicts()
	l.experiments()
	sort.Slice(l.out, func(i, j int) bool {
		a, b := l.out[i], l.out[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Field != b.Field {
			return a.Field < b.Field
		}
		if a.Message != b.Message {
			return a.Message < b.Message
		}
		return a.Severity < b.Severity
	})
	return l.out
}

type linter struct {
	s    *Set
	out  []Finding
	seen map[Finding]bool
	// fallbackEdges[source][service] is the fallback calls from source to
	// service use, collected while linting calls.
	fallbackEdges map[string]map[string]edge
	// experimentsOn lists the experiments by target service, sorted by name.
	experimentsOn map[string][]*ChaosExperiment
}

// edge is one service's fallback and the policy that sets it.
type edge struct{ to, policy string }

func (l *linter) add(sev Severity, kind, name, field, format string, args ...any) {
	if name == "" {
		return // nothing to report it against (only invalid input gets here)
	}
	f := Finding{Severity: sev, Kind: kind, Name: name, Field: field, Message: fmt.Sprintf(format, args...)}
	if !l.seen[f] {
		l.seen[f] = true
		l.out = append(l.out, f)
	}
}

// call is the merged, defaulted policy of one (source, service, route).
type call struct {
	source, service, route string
	spec                   PolicySpec
	from                   map[string]string
	// applicable are the policies that apply, most specific first.
	applicable []*ResiliencePolicy
}

// calls runs the per-call rules over every distinct (source, service, route).
func (l *linter) calls() {
	for _, svc := range l.s.ServiceNames() {
		routes := append([]string{""}, l.s.Routes(svc)...)
		var timeoutByDefault, timeoutSomewhere bool
		for _, src := range l.sourcesFor(svc) {
			// The retry budget is a cluster setting: it is spent by the
			// retries of every route.
			var budget *call
			var retrying, configured bool
			for _, route := range routes {
				c := l.resolve(src, svc, route)
				// A timeout switched off is a deliberate choice, not a
				// forgotten one: it silences noTimeout, and timeoutOff says so.
				if c.spec.Timeouts.Request != nil {
					timeoutSomewhere = true
					timeoutByDefault = timeoutByDefault || (src == "" && route == "")
				}
				l.timeoutOff(c)
				if r := c.spec.Retries; r != nil {
					if r.Budget != nil && budget == nil {
						budget = c
					}
					retrying = retrying || *r.Attempts > 0
					configured = configured || slices.ContainsFunc(c.applicable, retriesConfigured)
				}
				l.retryTime(c)
				l.retryStorm(c)
				l.idempotency(c)
				l.healthCheckTimeout(c)
				l.ejectEverything(c)
				if route == "" {
					if f := c.spec.Fallback; f != nil && f.Service != "" {
						if l.fallbackEdges[src] == nil {
							l.fallbackEdges[src] = map[string]edge{}
						}
						l.fallbackEdges[src][svc] = edge{to: f.Service, policy: c.from["fallback.service"]}
					}
				}
			}
			if budget != nil {
				l.budgetWithoutRetries(budget, retrying, configured)
			}
		}
		if !timeoutByDefault {
			l.noTimeout(svc, timeoutSomewhere)
		}
	}
}

// sourcesFor lists the sources whose calls to service may differ: "" (any
// caller) and every source named by a policy or experiment that may apply.
func (l *linter) sourcesFor(service string) []string {
	srcs := l.s.policySources(service)
	for _, e := range l.experimentsOn[service] {
		for _, src := range e.Spec.Sources {
			if !slices.Contains(srcs, src) {
				srcs = append(srcs, src)
			}
		}
	}
	sort.Strings(srcs)
	return srcs
}

func (l *linter) resolve(source, service, route string) *call {
	eff := l.s.Resolve(source, service, route)
	c := &call{source: source, service: service, route: route, spec: eff.Spec, from: eff.From}
	DefaultEffective(&c.spec)
	var labels map[string]string
	if svc := l.s.Services[service]; svc != nil {
		labels = svc.Metadata.Labels
	}
	for _, p := range l.s.policiesFor(service) {
		if p.Matches(source, service, labels, route) {
			c.applicable = append(c.applicable, p)
		}
	}
	sort.SliceStable(c.applicable, func(i, j int) bool {
		si, sj := c.applicable[i].Specificity(), c.applicable[j].Specificity()
		if si != sj {
			return si > sj
		}
		return c.applicable[i].Metadata.Name < c.applicable[j].Metadata.Name
	})
	return c
}

// blame returns the policy and field a finding about a call belongs to: the
// provider of the first of leaves that some policy sets, else the most
// specific applicable policy for which has is true (a section set empty,
// whose settings are all defaults), reported at section.
func (c *call) blame(leaves []string, section string, has func(*PolicySpec) bool) (policy, field string) {
	for _, leaf := range leaves {
		if p, ok := c.from[leaf]; ok {
			return p, "spec." + leaf
		}
	}
	for _, p := range c.applicable {
		if has(&p.Spec) {
			return p.Metadata.Name, "spec." + section
		}
	}
	return "", ""
}

// where describes a call for a message: "calls to payments on /charge from checkout".
func (c *call) where() string {
	s := "calls to " + c.service
	if c.route != "" {
		s += " on " + c.route
	}
	if c.source != "" {
		s += " from " + c.source
	}
	return s
}

// alsoFrom names the policy that provides leaf when it is not policy.
func (c *call) alsoFrom(leaf, policy string) string {
	if p, ok := c.from[leaf]; ok && p != policy {
		return fmt.Sprintf(" (%s from policy %s)", leaf, p)
	}
	return ""
}

func hasRetries(p *PolicySpec) bool { return p.Retries != nil }

// retryTime: the worst-case start of the last retry (attempts × perTryTimeout
// plus the longest backoff waits) at or past the request deadline means the
// later tries can never run.
func (l *linter) retryTime(c *call) {
	r, t := c.spec.Retries, c.spec.Timeouts
	if r == nil || t == nil || t.Request == nil || r.PerTryTimeout == nil || r.Attempts == nil || *r.Attempts < 1 {
		return
	}
	if t.Request.IsOff() || r.PerTryTimeout.IsOff() {
		return // no deadline, or no per-try bound to add up: every retry may run
	}
	n, per, req := *r.Attempts, r.PerTryTimeout.D(), t.Request.D()
	waits := backoffWaits(n, r.Backoff.Base.D(), r.Backoff.Max.D())
	lastStart := satAdd(satMul(per, n), waits)
	if lastStart < req {
		return
	}
	policy, field := c.blame([]string{"retries.attempts", "retries.perTryTimeout"}, "retries", hasRetries)
	l.add(SeverityWarning, KindPolicy, policy, field,
		"%d attempts × perTryTimeout %s + backoff up to %s = %s, at or past timeouts.request %s%s: the later tries can never run; raise timeouts.request to at least %s or lower attempts",
		n, Duration(per), Duration(waits), Duration(lastStart), Duration(req), c.alsoFrom("timeouts.request", policy), Duration(satAdd(lastStart, per)))
}

// backoffWaits is the longest total wait before n retries: the sum of
// min(max, base·2^i) for i < n (Envoy's full-jitter backoff never waits longer).
func backoffWaits(n int, base, maxWait time.Duration) time.Duration {
	var total time.Duration
	step := base
	for i := 0; i < n; i++ {
		if step >= maxWait { // capped from here on
			return satAdd(total, satMul(maxWait, n-i))
		}
		total = satAdd(total, step)
		step = satMul(step, 2)
	}
	return total
}

func satAdd(a, b time.Duration) time.Duration {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func satMul(d time.Duration, n int) time.Duration {
	if n != 0 && d > math.MaxInt64/time.Duration(n) {
		return math.MaxInt64
	}
	return d * time.Duration(n)
}

// retryStorm: two or more retries with no budget multiply the load on a
// failing upstream.
func (l *linter) retryStorm(c *call) {
	r := c.spec.Retries
	if r == nil || r.Attempts == nil || *r.Attempts < 2 || r.Budget != nil {
		return
	}
	policy, field := c.blame([]string{"retries.attempts"}, "retries", hasRetries)
	l.add(SeverityWarning, KindPolicy, policy, field,
		"%d retries per call and no retries.budget: when the upstream struggles every caller sends up to %d times the load (a retry storm); add retries.budget (for example percent: 20, minConcurrency: 3) or retry at most once",
		*r.Attempts, *r.Attempts+1)
}

// budgetWithoutRetries: a budget that no retry spends. c is a call that has
// the budget; retrying says whether any route of the service retries,
// configured whether any policy sets retries beyond a budget.
func (l *linter) budgetWithoutRetries(c *call, retrying, configured bool) {
	hasBudget := func(p *PolicySpec) bool { return p.Retries != nil && p.Retries.Budget != nil }
	policy, field := c.blame([]string{"retries.budget.percent", "retries.budget.minConcurrency"}, "retries.budget", hasBudget)
	switch {
	case !configured:
		l.add(SeverityWarning, KindPolicy, policy, field,
			"retries.budget is set but no policy configures retries for calls to %s, so only the default retries run; set retries (attempts, on) explicitly or drop the budget", c.service)
	case !retrying:
		l.add(SeverityWarning, KindPolicy, policy, field,
			"retries.budget has no effect: retries are off (attempts 0) on every route of %s; drop the budget or set attempts", c.service)
	}
}

// retriesConfigured reports whether a policy sets retries beyond a budget.
func retriesConfigured(p *ResiliencePolicy) bool {
	r := p.Spec.Retries
	if r == nil {
		return false
	}
	rest := *r
	rest.Budget = nil
	return r.Budget == nil || !isZeroRetries(rest)
}

func isZeroRetries(r Retries) bool {
	return r.Attempts == nil && r.PerTryTimeout == nil && len(r.On) == 0 && len(r.StatusCodes) == 0 && len(r.Methods) == 0 && r.Backoff == nil
}

// idempotency: retrying server errors of any method sends non-idempotent
// requests twice. gRPC services are exempt: every call is a POST.
func (l *linter) idempotency(c *call) {
	r := c.spec.Retries
	if r == nil || *r.Attempts < 1 || len(r.Methods) > 0 || l.protocol(c.service) == ProtocolGRPC {
		return
	}
	var conds []string
	for _, on := range r.On {
		if on == "5xx" || on == "gateway-error" || on == "retriable-status-codes" {
			conds = append(conds, on)
		}
	}
	for _, code := range r.StatusCodes {
		if code >= 500 {
			conds = append(conds, fmt.Sprint(code))
		}
	}
	if len(conds) == 0 {
		return
	}
	policy, field := c.blame([]string{"retries.on", "retries.statusCodes"}, "retries", hasRetries)
	l.add(SeverityWarning, KindPolicy, policy, field,
		"retries on %s for every method: a POST the upstream already acted on is sent again (double charges); set retries.methods to the idempotent methods, for example [GET, HEAD, PUT, DELETE]",
		strings.Join(conds, ", "))
}

// healthCheckTimeout: a probe timeout at or above the interval.
func (l *linter) healthCheckTimeout(c *call) {
	hc := c.spec.HealthCheck
	if hc == nil || hc.Timeout.D() < hc.Interval.D() {
		return
	}
	policy, field := c.blame([]string{"healthCheck.timeout", "healthCheck.interval"}, "healthCheck", func(p *PolicySpec) bool { return p.HealthCheck != nil })
	l.add(SeverityWarning, KindPolicy, policy, field,
		"healthCheck.timeout %s is not below interval %s: probes pile up and a hung host is noticed late; set timeout well below interval (for example 1s and 5s)",
		*hc.Timeout, *hc.Interval)
}

// ejectEverything: a circuit breaker that may eject every host, with nothing
// to fall back to.
func (l *linter) ejectEverything(c *call) {
	cb := c.spec.CircuitBreaker
	if cb == nil || *cb.MaxEjectionPercent < 100 || c.spec.Fallback != nil {
		return
	}
	policy := c.from["circuitBreaker.maxEjectionPercent"]
	l.add(SeverityWarning, KindPolicy, policy, "spec.circuitBreaker.maxEjectionPercent",
		"maxEjectionPercent 100 lets the circuit breaker eject every host of %s and no fallback is set, so calls then fail outright; add fallback.service or lower maxEjectionPercent (for example 50)",
		c.service)
}

// timeoutOff: a request timeout switched off, reported (as info) against
// the policy that switches it off, so a call without a deadline stays
// visible even though it is intended.
func (l *linter) timeoutOff(c *call) {
	if t := c.spec.Timeouts.Request; t == nil || !t.IsOff() {
		return
	}
	l.add(SeverityInfo, KindPolicy, c.from["timeouts.request"], "spec.timeouts.request",
		"timeouts.request is off for %s: they have no deadline, by this policy's choice (a long-lived stream?); make sure the callers bound them with a deadline of their own", c.where())
}

// noTimeout: the seed's first rule, every call has a timeout. some says
// whether some routes or sources have one.
func (l *linter) noTimeout(service string, some bool) {
	scope := "calls to " + service + " have no request timeout"
	if some {
		scope += " except on some routes or from some sources"
	}
	l.add(SeverityWarning, KindService, service, "",
		"%s: every call should have one; set timeouts.request in a ResiliencePolicy for %s, or in a mesh default (target.service: \"*\")", scope, service)
}

// protocol returns a service's protocol, defaulted ("" for unknown services).
func (l *linter) protocol(service string) string {
	svc := l.s.Services[service]
	if svc == nil {
		return ""
	}
	if svc.Spec.Protocol == "" {
		return DefaultProtocol
	}
	return svc.Spec.Protocol
}
