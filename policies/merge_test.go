package policies

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func pol(name, spec string) string { return "---\n" + doc("ResiliencePolicy", name, spec) }
func svcDoc(name, spec string) string {
	return "---\n" + doc("Service", name, spec)
}

// precedenceSet has one policy per specificity level, each setting the same
// leaf (timeouts.request) to a different value.
const precedenceSet = `
apiVersion: bulwark/v1
kind: Service
metadata: {name: payments, labels: {tier: critical}}
spec: {port: 80}
---
apiVersion: bulwark/v1
kind: Service
metadata: {name: ledger, labels: {tier: critical}}
spec: {port: 80}
---
apiVersion: bulwark/v1
kind: Service
metadata: {name: search}
spec: {port: 80}
` + `---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: mesh}
spec: {target: {service: "*"}, timeouts: {request: 1s}}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: crit}
spec: {target: {selector: {tier: critical}}, timeouts: {request: 2s}}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: pay}
spec: {target: {service: payments}, timeouts: {request: 3s}}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: pay-checkout}
spec: {target: {service: payments}, sources: [checkout], timeouts: {request: 4s}}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: pay-charge}
spec: {target: {service: payments, route: {pathPrefix: /charge}}, timeouts: {request: 5s}}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: pay-charge-checkout}
spec: {target: {service: payments, route: {pathPrefix: /charge}}, sources: [checkout], timeouts: {request: 6s}}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: any-checkout}
spec: {target: {service: "*"}, sources: [checkout], timeouts: {request: 7s}}
`

func TestSpecificity(t *testing.T) {
	s := decodeSet(t, precedenceSet)
	want := map[string]Specificity{
		"mesh": 0, "any-checkout": 1, "crit": 2, "pay": 4, "pay-checkout": 5, "pay-charge": 6, "pay-charge-checkout": 7,
	}
	for name, sp := range want {
		require.Equal(t, sp, s.Policies[name].Specificity(), name)
	}
}

func TestResolvePrecedence(t *testing.T) {
	s := decodeSet(t, precedenceSet)
	for _, tc := range []struct {
		source, service, route string
		want                   time.Duration
		from                   string
	}{
		{"", "search", "", 1 * time.Second, "mesh"},
		{"checkout", "search", "", 7 * time.Second, "any-checkout"},
		{"", "ledger", "", 2 * time.Second, "crit"},
		{"checkout", "ledger", "", 2 * time.Second, "crit"}, // a selector beats "*" even with sources
		{"", "payments", "", 3 * time.Second, "pay"},
		{"web", "payments", "", 3 * time.Second, "pay"},
		{"checkout", "payments", "", 4 * time.Second, "pay-checkout"},
		{"", "payments", "/charge", 5 * time.Second, "pay-charge"},
		{"web", "payments", "/charge", 5 * time.Second, "pay-charge"},
		{"checkout", "payments", "/charge", 6 * time.Second, "pay-charge-checkout"},
		{"", "payments", "/other", 3 * time.Second, "pay"},
		{"", "unknown", "", 1 * time.Second, "mesh"},
	} {
		eff := s.Resolve(tc.source, tc.service, tc.route)
		require.Equal(t, Dur(tc.want), eff.Spec.Timeouts.Request, "%+v", tc)
		require.Equal(t, map[string]string{"timeouts.request": tc.from}, eff.From, "%+v", tc)
		require.Empty(t, eff.Conflicts)
		require.Empty(t, eff.Spec.Target)
		require.Empty(t, eff.Spec.Sources)
	}
	require.Empty(t, s.Conflicts())
	require.Equal(t, []string{"/charge"}, s.Routes("payments"))
	require.Empty(t, s.Routes("ledger"))
	require.Equal(t, []string{"", "checkout"}, s.Sources())
}

func TestResolveMergesFieldByField(t *testing.T) {
	s := decodeSet(t, svcDoc("payments", "{port: 80}")+
		pol("mesh-default", `{target: {service: "*"}, timeouts: {connect: 1s, request: 3s}, retries: {backoff: {base: 10ms}}}`)+
		pol("payments-retries", `{target: {service: payments}, retries: {attempts: 3, backoff: {max: 1s}}}`))
	p := s.Policies["payments-retries"]
	before := *p.Spec.Retries

	eff := s.Resolve("", "payments", "")
	require.Equal(t, PolicySpec{
		Timeouts: &Timeouts{Connect: Dur(time.Second), Request: Dur(3 * time.Second)},
		Retries:  &Retries{Attempts: Ptr(3), Backoff: &Backoff{Base: Dur(10 * time.Millisecond), Max: Dur(time.Second)}},
	}, eff.Spec)
	require.Equal(t, map[string]string{
		"timeouts.connect":     "mesh-default",
		"timeouts.request":     "mesh-default",
		"retries.attempts":     "payments-retries",
		"retries.backoff.base": "mesh-default",
		"retries.backoff.max":  "payments-retries",
	}, eff.From)
	require.Empty(t, eff.Conflicts)

	// Defaulting the merged spec leaves the policies it came from untouched.
	DefaultEffective(&eff.Spec)
	require.Equal(t, before, *p.Spec.Retries)
	require.Nil(t, s.Policies["mesh-default"].Spec.Retries.Attempts)
}

func TestResolveConflicts(t *testing.T) {
	s := decodeSet(t, svcDoc("payments", "{port: 80}")+svcDoc("ledger", "{port: 80}")+
		pol("b-pay", `{target: {service: payments}, retries: {attempts: 2}, timeouts: {request: 1s}}`)+
		pol("a-pay", `{target: {service: payments}, retries: {attempts: 3}}`)+
		pol("c-pay", `{target: {service: payments}, retries: {attempts: 4}}`)+
		pol("from-web", `{target: {service: ledger}, sources: [web], bulkhead: {maxRequests: 10}}`)+
		pol("from-api", `{target: {service: ledger}, sources: [api], bulkhead: {maxRequests: 20}}`)+
		pol("from-web-api", `{target: {service: ledger}, sources: [api, web], bulkhead: {maxRequests: 30}}`))

	eff := s.Resolve("", "payments", "")
	require.Equal(t, Ptr(3), eff.Spec.Retries.Attempts)
	require.Equal(t, "a-pay", eff.From["retries.attempts"])
	require.Equal(t, "b-pay", eff.From["timeouts.request"])
	want := Conflict{Service: "payments", Field: "retries.attempts", Policies: []string{"a-pay", "b-pay", "c-pay"}, Winner: "a-pay"}
	require.Equal(t, []Conflict{want}, eff.Conflicts)
	require.Equal(t, "payments: retries.attempts is set by a-pay and b-pay and c-pay with equal specificity; a-pay wins", want.String())

	// Sources that do not overlap never conflict; overlapping ones do, for
	// the shared source only.
	eff = s.Resolve("api", "ledger", "")
	require.Equal(t, Ptr(20), eff.Spec.Bulkhead.MaxRequests)
	require.Equal(t, []Conflict{{Service: "ledger", Source: "api", Field: "bulkhead.maxRequests",
		Policies: []string{"from-api", "from-web-api"}, Winner: "from-api"}}, eff.Conflicts)
	require.Empty(t, s.Resolve("", "ledger", "").Conflicts)

	require.Equal(t, []Conflict{
		{Service: "ledger", Source: "api", Field: "bulkhead.maxRequests", Policies: []string{"from-api", "from-web-api"}, Winner: "from-api"},
		{Service: "ledger", Source: "web", Field: "bulkhead.maxRequests", Policies: []string{"from-web", "from-web-api"}, Winner: "from-web"},
		want,
	}, s.Conflicts())
	require.Equal(t, "ledger from api: bulkhead.maxRequests is set by from-api and from-web-api with equal specificity; from-api wins",
		s.Conflicts()[0].String())
}

func TestResolveConflictsRepeatOncePerRoute(t *testing.T) {
	s := decodeSet(t, svcDoc("payments", "{port: 80}")+
		pol("x", `{target: {service: payments, route: {pathPrefix: /charge}}, timeouts: {request: 1s}}`)+
		pol("y", `{target: {service: payments, route: {pathPrefix: /charge}}, timeouts: {request: 2s}}`)+
		pol("src", `{target: {service: payments}, sources: [checkout], bulkhead: {maxRequests: 1}}`))
	// Sources "" and "checkout" both see the conflict on /charge: it is listed once.
	require.Equal(t, []Conflict{{Service: "payments", Route: "/charge", Field: "timeouts.request", Policies: []string{"x", "y"}, Winner: "x"}}, s.Conflicts())
	require.Equal(t, "payments route /charge: timeouts.request is set by x and y with equal specificity; x wins", s.Conflicts()[0].String())
}

func TestResolveHealthCheckProbeIsOneLeaf(t *testing.T) {
	s := decodeSet(t, svcDoc("payments", "{port: 80}")+svcDoc("ledger", "{port: 80}")+
		pol("mesh", `{target: {service: "*"}, healthCheck: {http: {path: /healthz}, interval: 5s}}`)+
		pol("pay-tcp", `{target: {service: payments}, healthCheck: {tcp: {}, timeout: 2s}}`)+
		pol("ledger-grpc", `{target: {service: ledger}, healthCheck: {grpc: {}}}`)+
		pol("ledger-http", `{target: {service: ledger}, healthCheck: {http: {path: /ready}}}`))

	// The service policy's tcp probe replaces the mesh default's http probe
	// entirely; the interval still comes from the mesh default.
	eff := s.Resolve("", "payments", "")
	require.Equal(t, &HealthCheck{TCP: &TCPHealthCheck{}, Interval: Dur(5 * time.Second), Timeout: Dur(2 * time.Second)}, eff.Spec.HealthCheck)
	require.Equal(t, map[string]string{"healthCheck.probe": "pay-tcp", "healthCheck.timeout": "pay-tcp", "healthCheck.interval": "mesh"}, eff.From)

	// Two probes of equal specificity conflict even though they are different fields.
	eff = s.Resolve("", "ledger", "")
	require.Equal(t, &HealthCheck{GRPC: &GRPCHealthCheck{}, Interval: Dur(5 * time.Second)}, eff.Spec.HealthCheck)
	require.Equal(t, []Conflict{{Service: "ledger", Field: "healthCheck.probe", Policies: []string{"ledger-grpc", "ledger-http"}, Winner: "ledger-grpc"}}, eff.Conflicts)
}

func TestCalledBy(t *testing.T) {
	s := decodeSet(t, svcDoc("checkout", "{port: 80, dependencies: [payments, ledger, ghost]}")+
		svcDoc("payments", "{port: 80}")+
		svcDoc("payments-static", "{port: 80}")+
		svcDoc("payments-cache", "{port: 80}")+
		svcDoc("ledger", "{port: 80, dependencies: []}")+
		svcDoc("ledger-replica", "{port: 80}")+
		svcDoc("search", "{port: 80}")+
		svcDoc("search-static", "{port: 80}")+
		svcDoc("web", "{port: 80}")+
		pol("payments", `{target: {service: payments}, fallback: {service: payments-static}}`)+
		pol("payments-static", `{target: {service: payments-static}, fallback: {service: payments-cache}}`)+
		pol("ledger-for-web", `{target: {service: ledger}, sources: [web], fallback: {service: ledger-replica}}`)+
		pol("search", `{target: {selector: {tier: search}}, fallback: {service: search-static}}`))

	// Dependencies, and transitively their fallbacks; a dependency that does
	// not exist is skipped; a fallback only of policies that apply to the caller.
	require.Equal(t, []string{"ledger", "payments", "payments-cache", "payments-static"}, s.CalledBy("checkout"))
	// A service that depends on nothing calls nothing.
	require.Empty(t, s.CalledBy("ledger"))
	// Without dependencies, or unknown: every service.
	require.Equal(t, s.ServiceNames(), s.CalledBy("web"))
	require.Equal(t, s.ServiceNames(), s.CalledBy("nobody"))
	require.Equal(t, s.ServiceNames(), s.CalledBy(""))

	// The source-scoped fallback reaches the source it is scoped to.
	s.Services["web"].Spec.Dependencies = []string{"ledger"}
	require.Equal(t, []string{"ledger", "ledger-replica"}, s.CalledBy("web"))
}

func TestExperimentsFor(t *testing.T) {
	exp := func(name, spec string) string { return "---\n" + doc("ChaosExperiment", name, spec) }
	s := decodeSet(t, svcDoc("payments", "{port: 80}")+
		exp("b-all", `{target: {service: payments}, abort: {percent: 1, httpStatus: 503}, duration: 1m}`)+
		exp("a-checkout", `{target: {service: payments}, sources: [checkout], delay: {percent: 1, fixed: 1s}, duration: 1m}`)+
		exp("c-charge", `{target: {service: payments, route: {pathPrefix: /charge}}, abort: {percent: 1, httpStatus: 500}, duration: 1m}`))
	names := func(es []*ChaosExperiment) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.Metadata.Name)
		}
		return out
	}
	require.Equal(t, []string{"b-all"}, names(s.ExperimentsFor("web", "payments", "")))
	require.Equal(t, []string{"a-checkout", "b-all"}, names(s.ExperimentsFor("checkout", "payments", "")))
	require.Equal(t, []string{"c-charge"}, names(s.ExperimentsFor("checkout", "payments", "/charge")))
	require.Empty(t, s.ExperimentsFor("", "ledger", ""))
	require.Equal(t, []string{"/charge"}, s.Routes("payments"))
	require.Equal(t, []string{"", "checkout"}, s.Sources())
}
