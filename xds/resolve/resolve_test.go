package resolve

import (
	"encoding/json"
	"flag"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// update is accepted so that `go test ./xds/... -update` runs in every package.
var _ = flag.Bool("update", false, "regenerate golden files (none in this package)")

func service(name string, port int, eps ...policies.Endpoint) *policies.Service {
	return &policies.Service{
		TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindService},
		Metadata: policies.Metadata{Name: name},
		Spec:     policies.ServiceSpec{Port: port, Endpoints: eps},
	}
}

func policy(name string, target policies.Target, spec policies.PolicySpec) *policies.ResiliencePolicy {
	spec.Target = target
	return &policies.ResiliencePolicy{
		TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindPolicy},
		Metadata: policies.Metadata{Name: name},
		Spec:     spec,
	}
}

func experiment(name string, target policies.Target, spec policies.ExperimentSpec) *policies.ChaosExperiment {
	spec.Target = target
	spec.Duration = policies.Dur(time.Minute)
	return &policies.ChaosExperiment{
		TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindExperiment},
		Metadata: policies.Metadata{Name: name},
		Spec:     spec,
	}
}

func route(p string) *policies.RouteMatch { return &policies.RouteMatch{PathPrefix: p} }

func sampleSet() *policies.Set {
	set := policies.NewSet(
		service("payments", 8080, policies.Endpoint{Address: "10.0.0.2", Port: 1, Zone: "b"}, policies.Endpoint{Address: "10.0.0.1", Port: 1, Zone: "a", Weight: 3}),
		service("ledger", 8080, policies.Endpoint{Address: "10.0.1.1", Port: 1}),
		policy("mesh", policies.Target{Service: "*"}, policies.PolicySpec{
			Timeouts: &policies.Timeouts{Request: policies.Dur(5 * time.Second)},
			Retries:  &policies.Retries{Attempts: policies.Ptr(2), On: []string{"5xx"}},
		}),
		policy("payments-a", policies.Target{Service: "payments", Route: route("/a")}, policies.PolicySpec{
			Timeouts: &policies.Timeouts{Request: policies.Dur(time.Second)},
		}),
		policy("payments-abc", policies.Target{Service: "payments", Route: route("/abc")}, policies.PolicySpec{
			Retries: &policies.Retries{Attempts: policies.Ptr(0)},
		}),
		policy("payments-b", policies.Target{Service: "payments", Route: route("/b")}, policies.PolicySpec{
			Timeouts: &policies.Timeouts{Idle: policies.Dur(time.Minute)},
		}),
		policy("payments", policies.Target{Service: "payments"}, policies.PolicySpec{
			Fallback:       &policies.Fallback{Service: "ledger"},
			CircuitBreaker: &policies.CircuitBreaker{Consecutive5xx: policies.Ptr(3)},
		}),
		experiment("slow-everything", policies.Target{Service: "payments"}, policies.ExperimentSpec{
			Delay: &policies.Delay{Percent: 10, Fixed: policies.Duration(time.Second)},
		}),
		experiment("fail-b", policies.Target{Service: "payments", Route: route("/b")}, policies.ExperimentSpec{
			Abort: &policies.Abort{Percent: 10, HTTPStatus: 503},
		}),
	)
	set.Register("payments", "i-1", policies.Endpoint{Address: "10.0.0.3", Port: 1, Zone: "a"})
	return set
}

func TestResolveRoutesAndPrecedence(t *testing.T) {
	x, errs := Resolve(sampleSet(), ir.FlavorEnvoy, "", Options{})
	require.Empty(t, errs)
	require.NoError(t, x.Validate())
	require.Equal(t, ir.Address{Host: DefaultOutboundHost, Port: DefaultOutboundPort}, x.Outbound)
	require.Len(t, x.Services, 2)
	p := x.Services[1]
	require.Equal(t, "payments", p.Name)
	require.Equal(t, policies.ProtocolHTTP, p.Protocol, "DefaultService applied")

	var prefixes []string
	for _, r := range p.Routes {
		prefixes = append(prefixes, r.PathPrefix)
	}
	require.Equal(t, []string{"/abc", "/a", "/b", "/"}, prefixes, "longest first, ties by name, default last")
	abc, a, b, def := p.Routes[0], p.Routes[1], p.Routes[2], p.Routes[3]
	require.Equal(t, 5*time.Second, abc.Timeout.D(), "route-less policies reach named routes")
	require.Equal(t, 0, abc.Retry.Attempts, "a route policy can disable retries")
	require.Equal(t, time.Second, a.Timeout.D())
	require.Equal(t, 2, a.Retry.Attempts)
	require.Equal(t, time.Minute, b.IdleTimeout.D())
	require.Equal(t, 25*time.Millisecond, def.Retry.BackoffBase.D(), "defaults applied")
	require.Equal(t, 250*time.Millisecond, def.Retry.BackoffMax.D())

	require.Equal(t, "fail-b", b.Fault.Experiment, "a route experiment wins on its route")
	require.Equal(t, "slow-everything", a.Fault.Experiment, "a service-wide experiment reaches every route")
	require.Equal(t, "slow-everything", def.Fault.Experiment)

	require.Equal(t, "ledger", p.Fallback)
	require.Equal(t, 3, *p.Cluster.CircuitBreaker.Consecutive5xx)
	require.Equal(t, policies.DefaultCBMaxEjectionPct, *p.Cluster.CircuitBreaker.MaxEjectionPercent)
	require.Equal(t, policies.DefaultConnectTimeout, p.Cluster.ConnectTimeout.D())

	require.Equal(t, []ir.Endpoint{
		{Address: "10.0.0.1", Port: 1, Zone: "a", Weight: 3},
		{Address: "10.0.0.3", Port: 1, Zone: "a", Weight: 1},
		{Address: "10.0.0.2", Port: 1, Zone: "b", Weight: 1},
	}, p.Endpoints, "static and registered, sorted, weight 0 read as 1")
}

func TestResolveNeverMutatesTheSet(t *testing.T) {
	set := sampleSet()
	before, err := json.Marshal(set.Resources())
	require.NoError(t, err)
	for _, f := range []ir.Flavor{ir.FlavorEnvoy, ir.FlavorGRPC} {
		_, errs := Resolve(set, f, "checkout", Options{})
		require.Empty(t, errs)
	}
	after, err := json.Marshal(set.Resources())
	require.NoError(t, err)
	require.JSONEq(t, string(before), string(after))
	require.Empty(t, set.Services["payments"].Spec.Protocol, "DefaultService ran on a copy")
}

func TestResolveIsDeterministic(t *testing.T) {
	a, _ := Resolve(sampleSet(), ir.FlavorGRPC, "x", Options{})
	b, _ := Resolve(sampleSet(), ir.FlavorGRPC, "x", Options{})
	ja, err := json.Marshal(a)
	require.NoError(t, err)
	jb, err := json.Marshal(b)
	require.NoError(t, err)
	require.Equal(t, string(ja), string(jb))
	require.Empty(t, a.Outbound, "gRPC groups have no outbound listener")
}

func TestResolveOptionsAndBadGroups(t *testing.T) {
	x, errs := Resolve(sampleSet(), ir.FlavorEnvoy, "", Options{Outbound: ir.Address{Host: "10.1.1.1"}})
	require.Empty(t, errs)
	require.Equal(t, ir.Address{Host: "10.1.1.1", Port: DefaultOutboundPort}, x.Outbound)

	x, errs = Resolve(sampleSet(), ir.FlavorEnvoy, "", Options{Outbound: ir.Address{Host: "localhost"}})
	require.Nil(t, x)
	require.ErrorContains(t, errs[0], "outbound.host")

	x, errs = Resolve(sampleSet(), "sidecar", "", Options{})
	require.Nil(t, x)
	require.ErrorContains(t, errs[0], "flavor")

	x, errs = Resolve(nil, ir.FlavorGRPC, "", Options{})
	require.Nil(t, x)
	require.Len(t, errs, 1)
}

func TestResolveDependenciesAndFallbacks(t *testing.T) {
	set := sampleSet()
	caller := service("checkout", 8080)
	caller.Spec.Dependencies = []string{"payments"}
	set.Add(caller)
	x, errs := Resolve(set, ir.FlavorGRPC, "checkout", Options{})
	require.Empty(t, errs)
	var names []string
	for _, s := range x.Services {
		names = append(names, s.Name)
	}
	require.Equal(t, []string{"ledger", "payments"}, names, "payments and its fallback, not checkout itself")

	set.Add(policy("payments", policies.Target{Service: "payments"}, policies.PolicySpec{Fallback: &policies.Fallback{Service: "nowhere"}}))
	x, errs = Resolve(set, ir.FlavorGRPC, "", Options{})
	require.Len(t, errs, 1)
	require.ErrorContains(t, errs[0], `services[payments].fallback: service "nowhere" does not exist; the fallback is dropped`)
	require.Empty(t, x.Services[2].Fallback)
	require.NoError(t, x.Validate())
}

func TestResolveLeavesOutBadServicesOnly(t *testing.T) {
	set := sampleSet()
	set.Add(service("broken", 0)) // no port
	set.Add(experiment("nothing", policies.Target{Service: "ledger"}, policies.ExperimentSpec{}))
	set.Register("ledger", "again", policies.Endpoint{Address: "10.0.1.1", Port: 1})
	x, errs := Resolve(set, ir.FlavorEnvoy, "", Options{})
	require.Len(t, errs, 3)
	require.ErrorContains(t, errs[0], "service broken left out: services[broken].port")
	require.ErrorContains(t, errs[1], "services[ledger].endpoints: registered instance again repeats 10.0.1.1:1")
	require.ErrorContains(t, errs[2], "services[ledger].routes[0]: experiment nothing not applied")
	require.Len(t, x.Services, 2)
	require.Nil(t, x.Services[0].Routes[0].Fault)
	require.Len(t, x.Services[0].Endpoints, 1)
	require.NoError(t, x.Validate())
}

func TestResolveDefaultRouteNamedByAPolicy(t *testing.T) {
	set := policies.NewSet(
		service("web", 80, policies.Endpoint{Address: "10.0.0.1", Port: 80}),
		policy("web", policies.Target{Service: "web"}, policies.PolicySpec{Timeouts: &policies.Timeouts{Request: policies.Dur(time.Second)}}),
		policy("web-root", policies.Target{Service: "web", Route: route("/")}, policies.PolicySpec{Timeouts: &policies.Timeouts{Idle: policies.Dur(time.Minute)}}),
		experiment("root-chaos", policies.Target{Service: "web", Route: route("/")}, policies.ExperimentSpec{Abort: &policies.Abort{Percent: 1, HTTPStatus: 500}}),
	)
	x, errs := Resolve(set, ir.FlavorEnvoy, "", Options{})
	require.Empty(t, errs)
	routes := x.Services[0].Routes
	require.Len(t, routes, 1, "a policy naming / shapes the default route, not a second one")
	require.Equal(t, time.Second, routes[0].Timeout.D())
	require.Equal(t, time.Minute, routes[0].IdleTimeout.D())
	require.Equal(t, "root-chaos", routes[0].Fault.Experiment)
}
