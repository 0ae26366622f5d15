package policies

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLintExperimentGuards(t *testing.T) {
	const (
		noFallback = " have no fallback, so injected failures reach the callers' users; set fallback.service in a policy for payments before running the experiment, or make the hypothesis expect the errors"
		noTimeout  = " have no request timeout, so an injected delay or a hung host holds callers without bound; give payments a timeouts.request before running the experiment"
		svcNoTO    = ": every call should have one; set timeouts.request in a ResiliencePolicy for payments, or in a mesh default (target.service: \"*\")"
	)
	runLint(t, []lcase{
		{name: "an experiment on an unguarded service", set: svcDoc("payments", "{port: 80}") +
			exp("e", `{target: {service: payments}, abort: {percent: 10, httpStatus: 503}, duration: 10m}`),
			want: []Finding{
				warnE("e", "spec.target", "calls to payments"+noFallback),
				warnE("e", "spec.target", "calls to payments"+noTimeout),
				warnS("payments", "", "calls to payments have no request timeout"+svcNoTO),
			}},
		{name: "guarded for one source, not for the other", set: svcDoc("payments", "{port: 80}") + svcDoc("payments-static", "{port: 80}") +
			pol("pay-web", `{target: {service: payments}, sources: [web], timeouts: {request: 1s}, fallback: {service: payments-static}}`) +
			exp("e", `{target: {service: payments, route: {pathPrefix: /charge}}, sources: [checkout, web], delay: {percent: 5, fixed: 2s}, duration: 10m}`),
			want: []Finding{
				warnE("e", "spec.target", "calls to payments on /charge from checkout"+noFallback),
				warnE("e", "spec.target", "calls to payments on /charge from checkout"+noTimeout),
				warnS("payments", "", "calls to payments have no request timeout except on some routes or from some sources"+svcNoTO),
				warnS("payments-static", "", "calls to payments-static have no request timeout: every call should have one; set timeouts.request in a ResiliencePolicy for payments-static, or in a mesh default (target.service: \"*\")"),
			}},
	})
}

func TestLintShadowedExperiments(t *testing.T) {
	shadow := func(winner, where string) string {
		return "experiment " + winner + " applies to the same calls (" + where + ") and is in force there because its name sorts first; " +
			"only one experiment runs per call, so stop one or give them different routes or sources"
	}
	runLint(t, []lcase{
		{name: "same target, overlapping sources, same route", set: svcDoc("payments", "{port: 80}") + svcDoc("payments-static", "{port: 80}") + meshTimeout +
			pol("payments", `{target: {service: payments}, fallback: {service: payments-static}}`) +
			exp("e-a", `{target: {service: payments}, abort: {percent: 10, httpStatus: 503}, duration: 10m}`) +
			exp("e-b", `{target: {service: payments}, delay: {percent: 10, fixed: 1s}, duration: 10m}`) +
			exp("e-c", `{target: {service: payments}, sources: [checkout], abort: {percent: 1, httpStatus: 500}, duration: 10m}`) +
			exp("e-d", `{target: {service: payments, route: {pathPrefix: /charge}}, abort: {percent: 1, httpStatus: 500}, duration: 10m}`) +
			exp("e-e", `{target: {service: payments, route: {pathPrefix: /charge}}, headers: {x-chaos: "on"}, abort: {percent: 1, httpStatus: 500}, duration: 10m}`) +
			exp("e-f", `{target: {service: payments, route: {pathPrefix: /refund}}, abort: {percent: 1, httpStatus: 500}, duration: 10m}`),
			want: []Finding{
				warnE("e-b", "spec.target", shadow("e-a", "payments")),
				warnE("e-c", "spec.target", shadow("e-a", "payments")),
				warnE("e-e", "spec.target", shadow("e-d", "payments on /charge")),
			}},
		{name: "a source-scoped experiment that sorts first", set: svcDoc("payments", "{port: 80}") + svcDoc("payments-static", "{port: 80}") + meshTimeout +
			pol("payments", `{target: {service: payments}, fallback: {service: payments-static}}`) +
			exp("a-checkout", `{target: {service: payments}, sources: [checkout], abort: {percent: 10, httpStatus: 503}, duration: 10m}`) +
			exp("b-everyone", `{target: {service: payments}, delay: {percent: 10, fixed: 1s}, duration: 10m}`),
			want: []Finding{warnE("b-everyone", "spec.target", shadow("a-checkout", "payments"))}},
	})
}

func TestLintFlavors(t *testing.T) {
	const spec = `
  timeouts: {connect: 1s, request: 5s, idle: 1m}
  retries: {attempts: 1, perTryTimeout: 1s, on: [5xx, unavailable, reset, 5xx], statusCodes: [503], methods: [POST], budget: {percent: 20}}
  circuitBreaker: {consecutive5xx: 5, consecutiveGatewayErrors: 3, failurePercentage: {threshold: 50}}
  bulkhead: {maxConnections: 1, maxPendingRequests: 1, maxRequests: 1, maxRetries: 1, maxRequestsPerConnection: 1}
  healthCheck: {grpc: {}}`
	ignored := []struct{ field, msg string }{
		{"spec.bulkhead.maxConnections", "bulkhead.maxConnections is ignored by proxyless gRPC clients%s; use bulkhead.maxRequests instead"},
		{"spec.bulkhead.maxPendingRequests", "bulkhead.maxPendingRequests is ignored by proxyless gRPC clients%s; use bulkhead.maxRequests instead"},
		{"spec.bulkhead.maxRequestsPerConnection", "bulkhead.maxRequestsPerConnection is ignored by proxyless gRPC clients%s; use bulkhead.maxRequests instead"},
		{"spec.bulkhead.maxRetries", "bulkhead.maxRetries is ignored by proxyless gRPC clients%s; use bulkhead.maxRequests instead"},
		{"spec.circuitBreaker.consecutive5xx", "circuitBreaker.consecutive5xx is ignored by proxyless gRPC clients%s; use circuitBreaker.failurePercentage or circuitBreaker.successRate instead"},
		{"spec.circuitBreaker.consecutiveGatewayErrors", "circuitBreaker.consecutiveGatewayErrors is ignored by proxyless gRPC clients%s; use circuitBreaker.failurePercentage or circuitBreaker.successRate instead"},
		{"spec.healthCheck", "healthCheck is ignored by proxyless gRPC clients%s; rely on circuitBreaker.failurePercentage or successRate ejection instead"},
		{"spec.retries.budget", "retries.budget is ignored by proxyless gRPC clients%s; bound retries with a low retries.attempts instead"},
		{"spec.retries.methods", "retries.methods is ignored by proxyless gRPC clients%s; every gRPC call is a POST; target the routes of idempotent methods with retries instead"},
		{"spec.retries.on", "retry conditions 5xx, reset are ignored by proxyless gRPC clients%s; use cancelled, deadline-exceeded, internal, resource-exhausted, unavailable instead"},
		{"spec.retries.perTryTimeout", "retries.perTryTimeout is ignored by proxyless gRPC clients%s; timeouts.request bounds the whole call, retries included; rely on it instead"},
		{"spec.retries.statusCodes", "retries.statusCodes is ignored by proxyless gRPC clients%s; retry on gRPC status conditions in retries.on (unavailable, resource-exhausted, ...) instead"},
		{"spec.timeouts.connect", "timeouts.connect is ignored by proxyless gRPC clients%s; set the connect timeout in the client's dial options (grpc.WithConnectParams) instead"},
		{"spec.timeouts.idle", "timeouts.idle is ignored by proxyless gRPC clients%s; use the client's idle timeout (grpc.WithIdleTimeout) and keepalive instead"},
	}
	var want []Finding
	for _, ig := range ignored { // policy "inventory" targets a gRPC service: warnings
		want = append(want, warnP("inventory", ig.field, sprintf(ig.msg, ", and this policy applies to gRPC services (inventory)")))
	}
	for _, ig := range ignored { // policy "web" targets an HTTP service: information
		want = append(want, infoP("web", ig.field, sprintf(ig.msg, "")))
	}
	runLint(t, []lcase{
		{name: "every ignored field", set: svcDoc("inventory", "{port: 80, protocol: grpc}") + svcDoc("web", "{port: 80}") +
			pol("inventory", "\n  target: {service: inventory}"+spec) + pol("web", "\n  target: {service: web}"+spec),
			want: want},
		{name: "a selector over many gRPC services; a route policy; a missing target", set: svcDoc("g1", "{port: 80, protocol: grpc}") +
			"---\n" + doc("Service", "g2", "{port: 80, protocol: grpc}") + "---\n" + doc("Service", "g3", "{port: 80, protocol: grpc}") +
			"---\n" + doc("Service", "g4", "{port: 80, protocol: grpc}") + "---\n" + doc("Service", "h", "{port: 80}") + meshTimeout +
			pol("all", `{target: {service: "*"}, timeouts: {idle: 1m}}`) +
			pol("g1-route", `{target: {service: g1, route: {pathPrefix: /x}}, retries: {attempts: 1, on: [reset]}}`) +
			pol("ghost", `{target: {service: ghost}, circuitBreaker: {consecutive5xx: 2}}`),
			want: []Finding{
				warnP("all", "spec.timeouts.idle", "timeouts.idle is ignored by proxyless gRPC clients, and this policy applies to gRPC services (g1, g2, g3 and 1 more); use the client's idle timeout (grpc.WithIdleTimeout) and keepalive instead"),
				warnP("g1-route", "spec.retries.on", "retry condition reset is ignored by proxyless gRPC clients, and this policy applies to gRPC services (g1); use cancelled, deadline-exceeded, internal, resource-exhausted, unavailable instead"),
				infoP("ghost", "spec.circuitBreaker.consecutive5xx", "circuitBreaker.consecutive5xx is ignored by proxyless gRPC clients; use circuitBreaker.failurePercentage or circuitBreaker.successRate instead"),
				warnP("ghost", "spec.target.service", `service "ghost" does not exist, so this policy applies to nothing; fix the name or define the Service`),
			}},
	})
}

func TestLintNoTimeout(t *testing.T) {
	msg := func(svc, except string) string {
		return "calls to " + svc + " have no request timeout" + except + ": every call should have one; set timeouts.request in a ResiliencePolicy for " +
			svc + `, or in a mesh default (target.service: "*")`
	}
	const except = " except on some routes or from some sources"
	runLint(t, []lcase{
		{name: "none, route only, source only, selector", set: svcDoc("a", "{port: 80}") + svcDoc("b", "{port: 80}") + svcDoc("c", "{port: 80}") +
			"---\napiVersion: bulwark/v1\nkind: Service\nmetadata: {name: d, labels: {tier: x}}\nspec: {port: 80}\n" +
			pol("b-x", `{target: {service: b, route: {pathPrefix: /x}}, timeouts: {request: 1s}}`) +
			pol("c-web", `{target: {service: c}, sources: [web], timeouts: {request: 1s}}`) +
			pol("tier-x", `{target: {selector: {tier: x}}, timeouts: {request: 1s}}`),
			want: []Finding{
				warnS("a", "", msg("a", "")),
				warnS("b", "", msg("b", except)),
				warnS("c", "", msg("c", except)),
			}},
	})
}

func TestLintConflicts(t *testing.T) {
	const tail = " (lexically smaller name) and this setting is ignored; make one policy more specific (sources, route) or drop the field from the other"
	web := func(name string) string {
		return "---\napiVersion: bulwark/v1\nkind: Service\nmetadata: {name: " + name + ", labels: {tier: web, team: x}}\nspec: {port: 80}\n"
	}
	runLint(t, []lcase{
		{name: "equal specificity", set: svcDoc("payments", "{port: 80}") + web("a") + web("b") + web("c") + web("d") + meshTimeout +
			pol("pa", `{target: {service: payments}, timeouts: {request: 1s}}`) +
			pol("pb", `{target: {service: payments}, timeouts: {request: 2s}}`) +
			pol("s1", `{target: {selector: {tier: web}}, bulkhead: {maxRequests: 1}}`) +
			pol("s2", `{target: {selector: {team: x}}, bulkhead: {maxRequests: 2}}`) +
			pol("h1", `{target: {service: payments}, healthCheck: {tcp: {}}}`) +
			pol("h2", `{target: {service: payments}, healthCheck: {http: {path: /healthz}}}`) +
			pol("r1", `{target: {service: payments, route: {pathPrefix: /charge}}, sources: [checkout], timeouts: {request: 1s}}`) +
			pol("r2", `{target: {service: payments, route: {pathPrefix: /charge}}, sources: [checkout], timeouts: {request: 2s}}`) +
			pol("r3", `{target: {service: payments, route: {pathPrefix: /charge}}, sources: [checkout, web], timeouts: {request: 3s}}`),
			want: []Finding{
				infoP("h1", "spec.healthCheck", infoHC),
				infoP("h2", "spec.healthCheck", infoHC),
				errP("h2", "spec.healthCheck", "policies h1 and h2 set healthCheck with equal specificity for calls to payments; h1 wins"+tail),
				errP("pb", "spec.timeouts.request", "policies pa and pb set timeouts.request with equal specificity for calls to payments; pa wins"+tail),
				errP("r2", "spec.timeouts.request", "policies r1 and r2 and r3 set timeouts.request with equal specificity for calls to payments on /charge from checkout; r1 wins"+tail),
				errP("r3", "spec.timeouts.request", "policies r1 and r2 and r3 set timeouts.request with equal specificity for calls to payments on /charge from checkout; r1 wins"+tail),
				errP("s2", "spec.bulkhead.maxRequests", "policies s1 and s2 set bulkhead.maxRequests with equal specificity for calls to a, b, c and 1 more; s1 wins"+tail),
			}},
	})
}

func TestLintTargets(t *testing.T) {
	runLint(t, []lcase{
		{name: "names that do not exist", set: svcDoc("a", "{port: 80, dependencies: [ghost, a2]}") + svcDoc("a2", "{port: 80}") + meshTimeout +
			pol("ghost-p", `{target: {service: ghost}, timeouts: {request: 1s}}`) +
			pol("sel", `{target: {selector: {tier: none, team: y}}, bulkhead: {maxRequests: 5}}`) +
			exp("ghost-e", `{target: {service: ghost}, abort: {percent: 10, httpStatus: 503}, duration: 10m}`),
			want: []Finding{
				warnE("ghost-e", "spec.target.service", `service "ghost" does not exist, so this experiment injects nothing; fix the name or define the Service`),
				warnP("ghost-p", "spec.target.service", `service "ghost" does not exist, so this policy applies to nothing; fix the name or define the Service`),
				infoP("sel", "spec.target.selector", "the selector matches no service, so this policy applies to nothing yet; check the labels (team: y, tier: none)"),
				warnS("a", "spec.dependencies[0]", `service "ghost" does not exist, so proxies of a get no configuration for it; define it or drop the dependency`),
			}},
	})
}

// Lint expects validated resources but must not fail, loop or overflow on others.
func TestLintInvalidInput(t *testing.T) {
	s := NewSet(
		&Service{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindService}, Metadata: Metadata{Name: "s"}},
		&ResiliencePolicy{Metadata: Metadata{Name: "p"}, Spec: PolicySpec{Retries: &Retries{Attempts: Ptr(-5), PerTryTimeout: Dur(-time.Second)}}},
		&ResiliencePolicy{Metadata: Metadata{Name: "q"}, Spec: PolicySpec{Target: Target{Service: "s"}, Timeouts: &Timeouts{Request: Dur(time.Second)},
			Retries: &Retries{Attempts: Ptr(10000000), PerTryTimeout: Dur(time.Hour), On: []string{"unavailable"}, Budget: &Budget{}}}},
		&ChaosExperiment{Metadata: Metadata{Name: "e"}, Spec: ExperimentSpec{Target: Target{Selector: map[string]string{"a": "b"}}}},
	)
	forever := Duration(math.MaxInt64).String()
	require.Equal(t, []Finding{
		infoP("p", "spec.retries.perTryTimeout", infoPerTry),
		// Backoff: 25ms + 50ms + 100ms + 200ms, then 250ms for each of the
		// other 9,999,996 retries; the total saturates instead of wrapping.
		warnP("q", "spec.retries.attempts", "10000000 attempts × perTryTimeout 1h + backoff up to 2499999375ms = "+forever+
			", at or past timeouts.request 1s: the later tries can never run; raise timeouts.request to at least "+forever+" or lower attempts"),
		infoP("q", "spec.retries.budget", infoBudget),
		infoP("q", "spec.retries.perTryTimeout", infoPerTry),
	}, Lint(s))
}

func TestFindingString(t *testing.T) {
	f := errP("pb", "spec.timeouts.request", "conflict")
	require.Equal(t, "error: ResiliencePolicy pb: spec.timeouts.request: conflict", f.String())
	require.Equal(t, "warning: Service a: no timeout", warnS("a", "", "no timeout").String())
	require.True(t, HasErrors([]Finding{warnS("a", "", "x"), f}))
	require.False(t, HasErrors([]Finding{warnS("a", "", "x"), infoP("p", "", "y")}))
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// A source a small edit away from a declared service is a typo: the policy
// would shape no caller's calls. A source that resembles no service is an
// undeclared caller, which is legal.
func TestLintMistypedSources(t *testing.T) {
	const svcs = "---\n" + "apiVersion: bulwark/v1\nkind: Service\nmetadata: {name: frontend}\nspec: {port: 80}\n"
	runLint(t, []lcase{
		{name: "typo in a policy's sources", set: svcs + svcDoc("payments", "{port: 80}") + meshTimeout +
			pol("pay", `{target: {service: payments}, sources: [frontnd, batch-jobs], retries: {attempts: 1}}`),
			want: []Finding{
				errP("pay", "spec.sources[0]", `no service is named "frontnd" (did you mean "frontend"?); calls from frontend are not affected by this policy`),
			}},
		{name: "typo in an experiment's sources", set: svcs + svcDoc("payments", "{port: 80}") + svcDoc("payments-static", "{port: 80}") +
			pol("mesh", `{target: {service: "*"}, timeouts: {request: 10s}}`) +
			pol("pay", `{target: {service: payments}, fallback: {service: payments-static}}`) +
			exp("e", `{target: {service: payments}, sources: [frontedn], abort: {percent: 1, httpStatus: 503}, duration: 10m}`),
			want: []Finding{
				{Severity: SeverityError, Kind: KindExperiment, Name: "e", Field: "spec.sources[0]",
					Message: `no service is named "frontedn" (did you mean "frontend"?); calls from frontend are not affected by this experiment`},
			}},
		{name: "a typo in a target gets a suggestion", set: svcs + meshTimeout +
			pol("fe", `{target: {service: frontnd}, retries: {attempts: 1}}`),
			want: []Finding{
				warnP("fe", "spec.target.service", `service "frontnd" does not exist, so this policy applies to nothing; fix the name or define the Service (did you mean "frontend"?)`),
			}},
	})
}
