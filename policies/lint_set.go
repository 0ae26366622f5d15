package policies

import (
	"fmt"
	"slices"
	"strings"
)

// Lint rules about the set as a whole: targets, fallbacks, flavors,
// conflicts and experiments.

// targets: policies, experiments and dependencies that name what does not exist.
func (l *linter) targets() {
	for _, name := range sortedKeys(l.s.Policies) {
		t := l.s.Policies[name].Spec.Target
		switch {
		case t.Service != "" && t.Service != "*":
			if _, ok := l.s.Services[t.Service]; !ok {
				l.add(SeverityWarning, KindPolicy, name, "spec.target.service",
					"service %q does not exist, so this policy applies to nothing; fix the name or define the Service%s", t.Service, didYouMean(t.Service, l.s.ServiceNames()))
			}
		case t.Service == "" && len(t.Selector) > 0:
			if len(l.selected(t)) == 0 {
				l.add(SeverityInfo, KindPolicy, name, "spec.target.selector",
					"the selector matches no service, so this policy applies to nothing yet; check the labels (%s)", formatLabels(t.Selector))
			}
		}
	}
	for _, name := range sortedKeys(l.s.Experiments) {
		t := l.s.Experiments[name].Spec.Target
		if _, ok := l.s.Services[t.Service]; !ok && t.Service != "" && t.Service != "*" {
			l.add(SeverityWarning, KindExperiment, name, "spec.target.service",
				"service %q does not exist, so this experiment injects nothing; fix the name or define the Service%s", t.Service, didYouMean(t.Service, l.s.ServiceNames()))
		}
	}
	services := l.s.ServiceNames()
	for _, name := range sortedKeys(l.s.Policies) {
		l.mistypedSources(KindPolicy, name, "policy", l.s.Policies[name].Spec.Sources, services)
	}
	for _, name := range sortedKeys(l.s.Experiments) {
		l.mistypedSources(KindExperiment, name, "experiment", l.s.Experiments[name].Spec.Sources, services)
	}
	for _, name := range services {
		for i, dep := range l.s.Services[name].Spec.Dependencies {
			if _, ok := l.s.Services[dep]; !ok && dep != name {
				l.add(SeverityWarning, KindService, name, fmt.Sprintf("spec.dependencies[%d]", i),
					"service %q does not exist, so proxies of %s get no configuration for it; define it or drop the dependency", dep, name)
			}
		}
	}
}

// mistypedSources: a source that names no service but is a small edit away
// from one ("frontnd" for "frontend"). Callers need not be declared as
// Services, so an unknown source alone is legal; one that is almost the name
// of a declared service is a typo, and the resource would apply to no caller.
func (l *linter) mistypedSources(kind, name, what string, sources, services []string) {
	for i, src := range sources {
		if _, ok := l.s.Services[src]; ok {
			continue
		}
		if c := Closest(src, services); c != "" {
			l.add(SeverityError, kind, name, fmt.Sprintf("spec.sources[%d]", i),
				"no service is named %q (did you mean %q?); calls from %s are not affected by this %s", src, c, c, what)
		}
	}
}

// selected returns the services a policy target applies to, sorted.
func (l *linter) selected(t Target) []string {
	if t.Service != "" && t.Service != "*" {
		if _, ok := l.s.Services[t.Service]; ok {
			return []string{t.Service}
		}
		return nil
	}
	var out []string
	for _, name := range l.s.ServiceNames() {
		if targetMatches(Target{Service: t.Service, Selector: t.Selector}, name, l.s.Services[name].Metadata.Labels, "") {
			out = append(out, name)
		}
	}
	return out
}

func formatLabels(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range sortedKeys(m) {
		parts = append(parts, k+": "+m[k])
	}
	return strings.Join(parts, ", ")
}

// missingFallbacks: a fallback that names no service.
func (l *linter) missingFallbacks() {
	for _, name := range sortedKeys(l.s.Policies) {
		f := l.s.Policies[name].Spec.Fallback
		if f == nil || f.Service == "" {
			continue
		}
		if _, ok := l.s.Services[f.Service]; !ok {
			l.add(SeverityError, KindPolicy, name, "spec.fallback.service",
				"fallback service %q does not exist, so there is nothing to degrade to; define a Service named %q or name an existing one", f.Service, f.Service)
		}
	}
}

// fallbackCycles: services that fall back to each other, per source. Each
// policy that sets an edge of a cycle gets the finding.
func (l *linter) fallbackCycles() {
	for _, src := range l.s.Sources() {
		next := func(svc string) (edge, bool) {
			if e, ok := l.fallbackEdges[src][svc]; ok {
				return e, true
			}
			e, ok := l.fallbackEdges[""][svc]
			return e, ok
		}
		done := map[string]bool{}
		for _, start := range l.s.ServiceNames() {
			var path []string
			at := map[string]int{}
			for svc := start; !done[svc]; {
				at[svc] = len(path)
				path = append(path, svc)
				e, ok := next(svc)
				if !ok {
					break
				}
				if i, seen := at[e.to]; seen {
					l.reportCycle(path[i:], next)
					break
				}
				svc = e.to
			}
			for _, svc := range path {
				done[svc] = true
			}
		}
	}
}

func (l *linter) reportCycle(cycle []string, next func(string) (edge, bool)) {
	// Start at the smallest name, so the same cycle reads the same from anywhere.
	first := 0
	for i, svc := range cycle {
		if svc < cycle[first] {
			first = i
		}
	}
	cycle = append(slices.Clone(cycle[first:]), cycle[:first]...)
	text := strings.Join(append(slices.Clone(cycle), cycle[0]), " → ")
	if len(cycle) > 6 {
		text = fmt.Sprintf("%s → … → %s (%d services)", strings.Join(cycle[:5], " → "), cycle[0], len(cycle))
	}
	for _, svc := range cycle {
		e, _ := next(svc)
		l.add(SeverityError, KindPolicy, e.policy, "spec.fallback.service",
			"fallback cycle %s: when every host is down calls go round in circles and never degrade; remove one fallback of the cycle", text)
	}
}

// ignoredByGRPC lists what proxyless gRPC clients ignore, per field below
// spec, with what to use instead.
var ignoredByGRPC = []struct{ field, instead string }{
	{"timeouts.connect", "set the connect timeout in the client's dial options (grpc.WithConnectParams) instead"},
	{"timeouts.idle", "use the client's idle timeout (grpc.WithIdleTimeout) and keepalive instead"},
	{"retries.perTryTimeout", "timeouts.request bounds the whole call, retries included; rely on it instead"},
	{"retries.methods", "every gRPC call is a POST; target the routes of idempotent methods with retries instead"},
	{"retries.statusCodes", "retry on gRPC status conditions in retries.on (unavailable, resource-exhausted, ...) instead"},
	{"retries.budget", "bound retries with a low retries.attempts instead"},
	{"circuitBreaker.consecutive5xx", "use circuitBreaker.failurePercentage or circuitBreaker.successRate instead"},
	{"circuitBreaker.consecutiveGatewayErrors", "use circuitBreaker.failurePercentage or circuitBreaker.successRate instead"},
	{"bulkhead.maxConnections", "use bulkhead.maxRequests instead"},
	{"bulkhead.maxPendingRequests", "use bulkhead.maxRequests instead"},
	{"bulkhead.maxRetries", "use bulkhead.maxRequests instead"},
	{"bulkhead.maxRequestsPerConnection", "use bulkhead.maxRequests instead"},
	{"healthCheck", "rely on circuitBreaker.failurePercentage or successRate ejection instead"},
}

// flavors: fields proxyless gRPC clients ignore, one finding per policy and
// field; a warning when the policy applies to a gRPC service (its callers are
// likely proxyless), info otherwise.
func (l *linter) flavors() {
	for _, name := range sortedKeys(l.s.Policies) {
		p := l.s.Policies[name]
		fields := setFields(&p.Spec)
		var grpcSvcs []string
		for _, svc := range l.selected(p.Spec.Target) {
			if l.protocol(svc) == ProtocolGRPC {
				grpcSvcs = append(grpcSvcs, svc)
			}
		}
		sev, why := SeverityInfo, ""
		if len(grpcSvcs) > 0 {
			sev, why = SeverityWarning, fmt.Sprintf(", and this policy applies to gRPC services (%s)", listNames(grpcSvcs))
		}
		for _, ig := range ignoredByGRPC {
			if slices.ContainsFunc(fields, func(f string) bool { return f == ig.field || strings.HasPrefix(f, ig.field+".") }) {
				l.add(sev, KindPolicy, name, "spec."+ig.field, "%s is ignored by proxyless gRPC clients%s; %s", ig.field, why, ig.instead)
			}
		}
		if r := p.Spec.Retries; r != nil {
			var odd []string
			for _, on := range r.On {
				if !slices.Contains(GRPCRetryConditions, on) && !slices.Contains(odd, on) {
					odd = append(odd, on)
				}
			}
			switch len(odd) {
			case 0:
			case 1:
				l.add(sev, KindPolicy, name, "spec.retries.on", "retry condition %s is ignored by proxyless gRPC clients%s; use %s instead",
					odd[0], why, strings.Join(GRPCRetryConditions, ", "))
			default:
				l.add(sev, KindPolicy, name, "spec.retries.on", "retry conditions %s are ignored by proxyless gRPC clients%s; use %s instead",
					strings.Join(odd, ", "), why, strings.Join(GRPCRetryConditions, ", "))
			}
		}
	}
}

// listNames shortens a list of names for a message: "a, b, c and 2 more".
func listNames(names []string) string {
	if len(names) <= 3 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:3], ", "), len(names)-3)
}

// conflicts: leaves set by policies of equal specificity, reported against
// each policy whose setting is ignored.
func (l *linter) conflicts() {
	type group struct {
		c     Conflict
		where []string
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, c := range l.s.Conflicts() {
		key := c.Field + "|" + strings.Join(c.Policies, ",")
		g := byKey[key]
		if g == nil {
			g = &group{c: c}
			byKey[key] = g
			groups = append(groups, g)
		}
		// Policies of equal specificity either both name a route and
		// sources or both do not; when they do not, the conflict holds on
		// every route and for every source, so neither is worth naming.
		w := c.Service
		if p := l.s.Policies[c.Winner]; p != nil && p.Spec.Target.Route != nil {
			w += " on " + c.Route
		}
		if p := l.s.Policies[c.Winner]; p != nil && len(p.Spec.Sources) > 0 {
			w += " from " + c.Source
		}
		if !slices.Contains(g.where, w) {
			g.where = append(g.where, w)
		}
	}
	for _, g := range groups {
		c := g.c
		field := c.Field
		if field == "healthCheck.probe" {
			field = "healthCheck" // http, grpc and tcp merge as one setting
		}
		for _, loser := range c.Policies {
			if loser == c.Winner {
				continue
			}
			l.add(SeverityError, KindPolicy, loser, "spec."+field,
				"policies %s set %s with equal specificity for calls to %s; %s wins (lexically smaller name) and this setting is ignored; make one policy more specific (sources, route) or drop the field from the other",
				strings.Join(c.Policies, " and "), field, listNames(g.where), c.Winner)
		}
	}
}

// experiments: experiments whose callers would suffer without a guard, and
// experiments that another one shadows.
func (l *linter) experiments() {
	for _, name := range sortedKeys(l.s.Experiments) {
		e := l.s.Experiments[name]
		svc := e.Spec.Target.Service
		if _, ok := l.s.Services[svc]; !ok {
			continue
		}
		route := ""
		if e.Spec.Target.Route != nil {
			route = e.Spec.Target.Route.PathPrefix
		}
		sources := e.Spec.Sources
		if len(sources) == 0 {
			sources = []string{""}
		}
		for _, src := range sources {
			eff := l.s.Resolve(src, svc, route)
			c := &call{source: src, service: svc, route: route}
			if !hasRequestTimeout(eff) {
				l.add(SeverityWarning, KindExperiment, name, "spec.target",
					"%s have no request timeout, so an injected delay or a hung host holds callers without bound; give %s a timeouts.request before running the experiment", c.where(), svc)
			}
			if eff.Spec.Fallback == nil {
				l.add(SeverityWarning, KindExperiment, name, "spec.target",
					"%s have no fallback, so injected failures reach the callers' users; set fallback.service in a policy for %s before running the experiment, or make the hypothesis expect the errors", c.where(), svc)
			}
		}
	}
	l.shadowedExperiments()
}

// hasRequestTimeout reports whether calls have a request timeout; one
// switched off is none: an injected delay would hold the callers unbounded.
func hasRequestTimeout(e Effective) bool {
	return e.Spec.Timeouts != nil && e.Spec.Timeouts.Request != nil && !e.Spec.Timeouts.Request.IsOff()
}

// shadowedExperiments: when several experiments apply to the same calls,
// only the lexically first runs; the others are reported.
func (l *linter) shadowedExperiments() {
	for _, svc := range sortedKeys(l.experimentsOn) {
		for _, route := range append([]string{""}, l.s.Routes(svc)...) {
			for _, src := range l.sourcesFor(svc) {
				es := l.s.ExperimentsFor(src, svc, route)
				for _, e := range es[min(1, len(es)):] {
					where := svc
					if route != "" {
						where += " on " + route
					}
					l.add(SeverityWarning, KindExperiment, e.Metadata.Name, "spec.target",
						"experiment %s applies to the same calls (%s) and is in force there because its name sorts first; only one experiment runs per call, so stop one or give them different routes or sources",
						es[0].Metadata.Name, where)
				}
			}
		}
	}
}
