package policies

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// lcase is one lint case: a small set and the exact findings.
type lcase struct {
	name string
	set  string
	want []Finding
}

func runLint(t *testing.T, cases []lcase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := decodeSet(t, tc.set)
			got := Lint(s)
			require.Equal(t, tc.want, got)
			require.Equal(t, got, Lint(s), "lint must be deterministic")
		})
	}
}

func warnP(name, field, msg string) Finding {
	return Finding{Severity: SeverityWarning, Kind: KindPolicy, Name: name, Field: field, Message: msg}
}
func infoP(name, field, msg string) Finding {
	return Finding{Severity: SeverityInfo, Kind: KindPolicy, Name: name, Field: field, Message: msg}
}
func errP(name, field, msg string) Finding {
	return Finding{Severity: SeverityError, Kind: KindPolicy, Name: name, Field: field, Message: msg}
}
func warnE(name, field, msg string) Finding {
	return Finding{Severity: SeverityWarning, Kind: KindExperiment, Name: name, Field: field, Message: msg}
}
func warnS(name, field, msg string) Finding {
	return Finding{Severity: SeverityWarning, Kind: KindService, Name: name, Field: field, Message: msg}
}

func exp(name, spec string) string { return "---\n" + doc("ChaosExperiment", name, spec) }

// meshTimeout gives every call a request timeout, so cases about other rules
// stay free of the no-timeout warning.
var meshTimeout = pol("mesh", `{target: {service: "*"}, timeouts: {request: 10s}}`)

// Messages of the proxyless gRPC rule for an HTTP service (info).
const (
	infoPerTry = "retries.perTryTimeout is ignored by proxyless gRPC clients; timeouts.request bounds the whole call, retries included; rely on it instead"
	infoBudget = "retries.budget is ignored by proxyless gRPC clients; bound retries with a low retries.attempts instead"
	infoHC     = "healthCheck is ignored by proxyless gRPC clients; rely on circuitBreaker.failurePercentage or successRate ejection instead"
	infoCodes  = "retries.statusCodes is ignored by proxyless gRPC clients; retry on gRPC status conditions in retries.on (unavailable, resource-exhausted, ...) instead"
)

func infoOn(conds string) string {
	return "retry condition " + conds + " is ignored by proxyless gRPC clients; use cancelled, deadline-exceeded, internal, resource-exhausted, unavailable instead"
}

func TestLintClean(t *testing.T) {
	runLint(t, []lcase{
		{name: "empty set"},
		{name: "a well-guarded service", set: svcDoc("payments", "{port: 80}") + svcDoc("payments-static", "{port: 80}") + meshTimeout +
			pol("payments", `{target: {service: payments}, retries: {attempts: 1, on: [unavailable]}, fallback: {service: payments-static},
  circuitBreaker: {failurePercentage: {threshold: 50}, maxEjectionPercent: 100}, bulkhead: {maxRequests: 100}}`) +
			exp("payments-503", `{target: {service: payments}, abort: {percent: 10, httpStatus: 503}, duration: 10m}`)},
	})
}

func TestLintRetryTime(t *testing.T) {
	const later = "the later tries can never run; raise timeouts.request to at least "
	runLint(t, []lcase{
		{name: "the last retry starts after the deadline", set: svcDoc("payments", "{port: 80}") +
			pol("mesh", `{target: {service: "*"}, timeouts: {request: 2s}}`) +
			pol("payments", `{target: {service: payments}, retries: {attempts: 2, perTryTimeout: 1s, on: [unavailable], budget: {percent: 20}}}`),
			want: []Finding{
				warnP("payments", "spec.retries.attempts", "2 attempts × perTryTimeout 1s + backoff up to 75ms = 2075ms, at or past timeouts.request 2s "+
					"(timeouts.request from policy mesh): "+later+"3075ms or lower attempts"),
				infoP("payments", "spec.retries.budget", infoBudget),
				infoP("payments", "spec.retries.perTryTimeout", infoPerTry),
			}},
		{name: "it fits", set: svcDoc("payments", "{port: 80}") +
			pol("payments", `{target: {service: payments}, timeouts: {request: 3s}, retries: {attempts: 2, perTryTimeout: 1s, on: [unavailable], budget: {percent: 20}}}`),
			want: []Finding{
				infoP("payments", "spec.retries.budget", infoBudget),
				infoP("payments", "spec.retries.perTryTimeout", infoPerTry),
			}},
		{name: "the last retry would start exactly at the deadline; backoff capped by max", set: svcDoc("payments", "{port: 80}") +
			pol("payments", `{target: {service: payments}, timeouts: {request: 1s}, retries: {attempts: 3, perTryTimeout: 300ms, on: [unavailable],
  backoff: {base: 20ms, max: 30ms}, budget: {percent: 20}}}`),
			want: []Finding{
				// waits: 20ms + 30ms + 30ms (capped) = 80ms; 3 × 300ms + 80ms = 980ms < 1s: fits.
				infoP("payments", "spec.retries.budget", infoBudget),
				infoP("payments", "spec.retries.perTryTimeout", infoPerTry),
			}},
		{name: "at the deadline counts", set: svcDoc("payments", "{port: 80}") +
			pol("payments", `{target: {service: payments}, timeouts: {request: 1s}, retries: {attempts: 1, perTryTimeout: 975ms, on: [unavailable]}}`),
			want: []Finding{
				warnP("payments", "spec.retries.attempts", "1 attempts × perTryTimeout 975ms + backoff up to 25ms = 1s, at or past timeouts.request 1s: "+later+"1975ms or lower attempts"),
				infoP("payments", "spec.retries.perTryTimeout", infoPerTry),
			}},
		{name: "a route policy is blamed for its own retries", set: svcDoc("payments", "{port: 80}") +
			pol("payments", `{target: {service: payments}, timeouts: {request: 2s}}`) +
			pol("charge", `{target: {service: payments, route: {pathPrefix: /charge}}, retries: {attempts: 1, perTryTimeout: 2s, on: [unavailable]}}`),
			want: []Finding{
				warnP("charge", "spec.retries.attempts", "1 attempts × perTryTimeout 2s + backoff up to 25ms = 2025ms, at or past timeouts.request 2s "+
					"(timeouts.request from policy payments): "+later+"4025ms or lower attempts"),
				infoP("charge", "spec.retries.perTryTimeout", infoPerTry),
			}},
		{name: "defaulted attempts: the policy providing perTryTimeout is blamed", set: svcDoc("payments", "{port: 80}") +
			pol("payments", `{target: {service: payments}, timeouts: {request: 1s}, retries: {perTryTimeout: 600ms, on: [unavailable], budget: {percent: 10}}}`),
			want: []Finding{
				infoP("payments", "spec.retries.budget", infoBudget),
				warnP("payments", "spec.retries.perTryTimeout", "2 attempts × perTryTimeout 600ms + backoff up to 75ms = 1275ms, at or past timeouts.request 1s: "+later+"1875ms or lower attempts"),
				infoP("payments", "spec.retries.perTryTimeout", infoPerTry),
			}},
	})
}

func TestLintRetryStormAndBudget(t *testing.T) {
	storm := func(n, load string) string {
		return n + " retries per call and no retries.budget: when the upstream struggles every caller sends up to " + load +
			" times the load (a retry storm); add retries.budget (for example percent: 20, minConcurrency: 3) or retry at most once"
	}
	runLint(t, []lcase{
		{name: "a mesh default storm is reported once", set: svcDoc("a", "{port: 80}") + svcDoc("b", "{port: 80}") + svcDoc("c", "{port: 80}") +
			pol("mesh", `{target: {service: "*"}, timeouts: {request: 10s}, retries: {attempts: 3, on: [unavailable]}}`),
			want: []Finding{warnP("mesh", "spec.retries.attempts", storm("3", "4"))}},
		{name: "defaulted attempts blame the retries section", set: svcDoc("a", "{port: 80}") + meshTimeout +
			pol("a", `{target: {service: a}, retries: {on: [unavailable]}}`),
			want: []Finding{warnP("a", "spec.retries", storm("2", "3"))}},
		{name: "one retry is no storm; a budget elsewhere counts", set: svcDoc("a", "{port: 80}") + svcDoc("b", "{port: 80}") + meshTimeout +
			pol("a", `{target: {service: a}, retries: {attempts: 1, on: [unavailable]}}`) +
			pol("b-budget", `{target: {service: b}, retries: {budget: {percent: 20}}}`) +
			pol("b-route", `{target: {service: b, route: {pathPrefix: /x}}, retries: {attempts: 4, on: [unavailable]}}`),
			want: []Finding{infoP("b-budget", "spec.retries.budget", infoBudget)}},
		{name: "a budget with retries off", set: svcDoc("a", "{port: 80}") + meshTimeout +
			pol("a", `{target: {service: a}, retries: {attempts: 0, budget: {percent: 20}}}`),
			want: []Finding{
				infoP("a", "spec.retries.budget", infoBudget),
				warnP("a", "spec.retries.budget.percent", "retries.budget has no effect: retries are off (attempts 0) on every route of a; drop the budget or set attempts"),
			}},
		{name: "a budget and nothing else", set: svcDoc("a", "{port: 80}") + meshTimeout +
			pol("a", `{target: {service: a}, retries: {budget: {minConcurrency: 1}}}`),
			want: []Finding{
				infoP("a", "spec.retries.budget", infoBudget),
				warnP("a", "spec.retries.budget.minConcurrency", "retries.budget is set but no policy configures retries for calls to a, so only the default retries run; set retries (attempts, on) explicitly or drop the budget"),
			}},
		{name: "retries off on one route only: the budget still serves the others", set: svcDoc("a", "{port: 80}") + meshTimeout +
			pol("a", `{target: {service: a}, retries: {attempts: 2, on: [unavailable], budget: {percent: 20}}}`) +
			pol("a-x", `{target: {service: a, route: {pathPrefix: /x}}, retries: {attempts: 0}}`),
			want: []Finding{infoP("a", "spec.retries.budget", infoBudget)}},
	})
}

func TestLintIdempotency(t *testing.T) {
	runLint(t, []lcase{
		{name: "server errors retried for every method", set: svcDoc("a", "{port: 80}") + meshTimeout +
			pol("a", `{target: {service: a}, retries: {attempts: 1, on: [5xx, reset], statusCodes: [503, 429]}}`),
			want: []Finding{
				warnP("a", "spec.retries.on", "retries on 5xx, 503 for every method: a POST the upstream already acted on is sent again (double charges); "+
					"set retries.methods to the idempotent methods, for example [GET, HEAD, PUT, DELETE]"),
				infoP("a", "spec.retries.on", "retry conditions 5xx, reset are ignored by proxyless gRPC clients; use cancelled, deadline-exceeded, internal, resource-exhausted, unavailable instead"),
				infoP("a", "spec.retries.statusCodes", infoCodes),
			}},
		{name: "status codes alone; a route policy is blamed", set: svcDoc("a", "{port: 80}") + meshTimeout +
			pol("a-pay", `{target: {service: a, route: {pathPrefix: /pay}}, retries: {attempts: 1, statusCodes: [502]}}`),
			want: []Finding{
				warnP("a-pay", "spec.retries.statusCodes", "retries on 502 for every method: a POST the upstream already acted on is sent again (double charges); "+
					"set retries.methods to the idempotent methods, for example [GET, HEAD, PUT, DELETE]"),
				infoP("a-pay", "spec.retries.statusCodes", infoCodes),
			}},
		{name: "methods set, or a gRPC service: no warning", set: svcDoc("a", "{port: 80}") + svcDoc("g", "{port: 80, protocol: grpc}") + meshTimeout +
			pol("a", `{target: {service: a}, retries: {attempts: 1, on: [gateway-error], methods: [GET]}}`) +
			pol("g", `{target: {service: g}, retries: {attempts: 1, on: [5xx, unavailable]}}`),
			want: []Finding{
				infoP("a", "spec.retries.methods", "retries.methods is ignored by proxyless gRPC clients; every gRPC call is a POST; target the routes of idempotent methods with retries instead"),
				infoP("a", "spec.retries.on", infoOn("gateway-error")),
				warnP("g", "spec.retries.on", "retry condition 5xx is ignored by proxyless gRPC clients, and this policy applies to gRPC services (g); use cancelled, deadline-exceeded, internal, resource-exhausted, unavailable instead"),
			}},
	})
}

func TestLintHealthAndEjection(t *testing.T) {
	runLint(t, []lcase{
		{name: "probe timeout not below the interval", set: svcDoc("a", "{port: 80}") + svcDoc("b", "{port: 80}") + meshTimeout +
			pol("a", `{target: {service: a}, healthCheck: {tcp: {}, interval: 2s, timeout: 2s}}`) +
			pol("b", `{target: {service: b}, healthCheck: {grpc: {}, interval: 500ms}}`),
			want: []Finding{
				infoP("a", "spec.healthCheck", infoHC),
				warnP("a", "spec.healthCheck.timeout", "healthCheck.timeout 2s is not below interval 2s: probes pile up and a hung host is noticed late; set timeout well below interval (for example 1s and 5s)"),
				infoP("b", "spec.healthCheck", infoHC),
				warnP("b", "spec.healthCheck.interval", "healthCheck.timeout 1s is not below interval 500ms: probes pile up and a hung host is noticed late; set timeout well below interval (for example 1s and 5s)"),
			}},
		{name: "every host may be ejected and nothing to fall back to", set: svcDoc("a", "{port: 80}") + svcDoc("b", "{port: 80}") + meshTimeout +
			pol("crit", `{target: {service: "*"}, circuitBreaker: {successRate: {}, maxEjectionPercent: 100}}`) +
			pol("b", `{target: {service: b}, fallback: {service: a}}`),
			want: []Finding{
				warnP("crit", "spec.circuitBreaker.maxEjectionPercent", "maxEjectionPercent 100 lets the circuit breaker eject every host of a and no fallback is set, "+
					"so calls then fail outright; add fallback.service or lower maxEjectionPercent (for example 50)"),
			}},
	})
}

func TestLintFallbacks(t *testing.T) {
	cycle := func(c string) string {
		return "fallback cycle " + c + ": when every host is down calls go round in circles and never degrade; remove one fallback of the cycle"
	}
	runLint(t, []lcase{
		{name: "a fallback that does not exist", set: svcDoc("a", "{port: 80}") + meshTimeout +
			pol("a", `{target: {service: a}, fallback: {service: a-static}}`),
			want: []Finding{errP("a", "spec.fallback.service", `fallback service "a-static" does not exist, so there is nothing to degrade to; define a Service named "a-static" or name an existing one`)}},
		{name: "a three-service cycle", set: svcDoc("c", "{port: 80}") + svcDoc("b", "{port: 80}") + svcDoc("a", "{port: 80}") + svcDoc("z", "{port: 80}") + meshTimeout +
			pol("pa", `{target: {service: a}, fallback: {service: b}}`) +
			pol("pb", `{target: {service: b}, fallback: {service: c}}`) +
			pol("pc", `{target: {service: c}, fallback: {service: a}}`) +
			pol("pz", `{target: {service: z}, fallback: {service: a}}`),
			want: []Finding{
				errP("pa", "spec.fallback.service", cycle("a → b → c → a")),
				errP("pb", "spec.fallback.service", cycle("a → b → c → a")),
				errP("pc", "spec.fallback.service", cycle("a → b → c → a")),
			}},
		{name: "a selector falling back to a service it selects", set: svcDoc("d", "{port: 80}") +
			"---\napiVersion: bulwark/v1\nkind: Service\nmetadata: {name: e, labels: {tier: web}}\nspec: {port: 80}\n" + meshTimeout +
			pol("web", `{target: {selector: {tier: web}}, fallback: {service: e}}`),
			want: []Finding{errP("web", "spec.fallback.service", cycle("e → e"))}},
		{name: "a long cycle is shortened", set: ring(7), want: func() []Finding {
			var out []Finding
			for i := 1; i <= 7; i++ {
				out = append(out, errP(fmt.Sprintf("p%d", i), "spec.fallback.service", cycle("r1 → r2 → r3 → r4 → r5 → … → r1 (7 services)")))
			}
			return out
		}()},
		{name: "a cycle for one source only", set: svcDoc("a", "{port: 80}") + svcDoc("b", "{port: 80}") + meshTimeout +
			pol("pa", `{target: {service: a}, fallback: {service: b}}`) +
			pol("pb-web", `{target: {service: b}, sources: [web], fallback: {service: a}}`),
			want: []Finding{
				errP("pa", "spec.fallback.service", cycle("a → b → a")),
				errP("pb-web", "spec.fallback.service", cycle("a → b → a")),
			}},
	})
}

// ring is n services r1..rn, each falling back to the next, the last to the first.
func ring(n int) string {
	out := meshTimeout
	for i := 1; i <= n; i++ {
		out += svcDoc(fmt.Sprintf("r%d", i), "{port: 80}") +
			pol(fmt.Sprintf("p%d", i), fmt.Sprintf("{target: {service: r%d}, fallback: {service: r%d}}", i, i%n+1))
	}
	return out
}
