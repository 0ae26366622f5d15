package translate

import (
	"fmt"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// svc is a minimal valid service, for tests to adjust.
func svc(name string) *ir.Service {
	return &ir.Service{
		Name: name, Protocol: policies.ProtocolHTTP, Port: 8080,
		Endpoints: []ir.Endpoint{{Address: "10.0.0.1", Port: 9001, Weight: 1}},
		Cluster:   ir.ClusterPolicy{ConnectTimeout: policies.Dur(time.Second)},
		Routes:    []*ir.Route{{PathPrefix: "/"}},
	}
}

func retry(attempts int, on ...string) *ir.Retry {
	return &ir.Retry{Attempts: attempts, On: on, BackoffBase: policies.Duration(25 * time.Millisecond), BackoffMax: policies.Duration(250 * time.Millisecond)}
}

func group(flavor ir.Flavor, ss ...*ir.Service) *ir.Xds {
	x := &ir.Xds{Flavor: flavor, Services: ss}
	if flavor == ir.FlavorEnvoy {
		x.Outbound = ir.Address{Host: "127.0.0.1", Port: 15001}
	}
	return x
}

func TestRetryPolicyNeverHasZeroRetries(t *testing.T) {
	cases := []struct {
		name    string
		flavor  ir.Flavor
		retry   *ir.Retry
		wantOn  string // "" means no policy at all
		wantNum uint32
	}{
		{"envoy attempts 0", ir.FlavorEnvoy, retry(0, "5xx"), "", 0},
		{"grpc attempts 0", ir.FlavorGRPC, retry(0, "unavailable"), "", 0},
		{"grpc only HTTP conditions", ir.FlavorGRPC, retry(3, "5xx", "reset", "connect-failure"), "", 0},
		{"grpc keeps gRPC conditions", ir.FlavorGRPC, retry(3, "5xx", "unavailable", "cancelled", "reset"), "cancelled,unavailable", 3},
		{"envoy keeps everything", ir.FlavorEnvoy, retry(1, "unavailable", "5xx"), "5xx,unavailable", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := retryPolicy(tc.flavor, tc.retry)
			require.NoError(t, err)
			if tc.wantOn == "" {
				require.Nil(t, p)
				return
			}
			require.Equal(t, tc.wantOn, p.GetRetryOn())
			require.Equal(t, tc.wantNum, p.GetNumRetries().GetValue())
			require.Positive(t, p.GetRetryBackOff().GetBaseInterval().AsDuration())
		})
	}
}

func TestGRPCRetryPolicyHasNoHTTPOnlyFields(t *testing.T) {
	r := retry(2, "unavailable", "5xx")
	r.StatusCodes, r.Methods, r.PerTryTimeout = []int{503}, []string{"GET"}, policies.Dur(time.Second)
	p, err := retryPolicy(ir.FlavorGRPC, r)
	require.NoError(t, err)
	require.Equal(t, "unavailable", p.GetRetryOn(), "no retriable-status-codes or 5xx for gRPC")
	require.Empty(t, p.GetRetriableStatusCodes())
	require.Empty(t, p.GetRetriableRequestHeaders())
	require.Empty(t, p.GetRetryHostPredicate())
	require.Nil(t, p.GetPerTryTimeout())

	e, err := retryPolicy(ir.FlavorEnvoy, r)
	require.NoError(t, err)
	require.Equal(t, "5xx,retriable-status-codes,unavailable", e.GetRetryOn())
	require.Equal(t, []uint32{503}, e.GetRetriableStatusCodes())
	require.Len(t, e.GetRetriableRequestHeaders(), 1)
	require.Equal(t, ":method", e.GetRetriableRequestHeaders()[0].GetName())
	require.Equal(t, previousHostsPredicate, e.GetRetryHostPredicate()[0].GetName())
}

func TestLocalitiesAlwaysHaveIDAndWeight(t *testing.T) {
	s := svc("orders")
	s.Endpoints = []ir.Endpoint{
		{Address: "10.0.0.5", Port: 1, Zone: "b", Weight: 7},
		{Address: "10.0.0.4", Port: 1, Weight: 1},
		{Address: "10.0.0.3", Port: 1, Zone: "a", Weight: 2},
		{Address: "10.0.0.2", Port: 1, Zone: "b", Weight: 1},
		{Address: "10.0.0.1", Port: 1, Zone: "a", Weight: 3},
	}
	cla := loadAssignment(s)
	var zones []string
	for _, l := range cla.GetEndpoints() {
		require.NotNil(t, l.GetLocality(), "gRPC NACKs a locality without an ID")
		zones = append(zones, l.GetLocality().GetZone())
		var sum uint32
		for _, ep := range l.GetLbEndpoints() {
			require.NotNil(t, ep.GetLoadBalancingWeight())
			require.GreaterOrEqual(t, ep.GetLoadBalancingWeight().GetValue(), uint32(1), "gRPC NACKs endpoint weight 0")
			sum += ep.GetLoadBalancingWeight().GetValue()
		}
		require.Equal(t, sum, l.GetLoadBalancingWeight().GetValue(), "locality weight is the sum of its hosts")
	}
	require.Equal(t, []string{"", "a", "b"}, zones, "one locality per zone, sorted")
	require.Equal(t, "10.0.0.1", cla.GetEndpoints()[1].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress())

	s.Endpoints = nil
	require.Empty(t, loadAssignment(s).GetEndpoints(), "no endpoints: an empty assignment")
}

func TestAggregateClusterLbPolicyPerFlavor(t *testing.T) {
	s := svc("payments")
	s.Fallback = "payments-static"
	g, err := aggregateCluster(ir.FlavorGRPC, s)
	require.NoError(t, err)
	require.Equal(t, clusterv3.Cluster_ROUND_ROBIN, g.GetLbPolicy(), "gRPC NACKs CLUSTER_PROVIDED: left unset")
	e, err := aggregateCluster(ir.FlavorEnvoy, s)
	require.NoError(t, err)
	require.Equal(t, clusterv3.Cluster_CLUSTER_PROVIDED, e.GetLbPolicy(), "Envoy requires CLUSTER_PROVIDED")
}

func TestEveryEnforcingFieldIsSet(t *testing.T) {
	n := policies.Ptr(5)
	detectors := []policies.CircuitBreaker{
		{Consecutive5xx: n},
		{ConsecutiveGatewayErrors: n},
		{SuccessRate: &policies.SuccessRate{StdevFactor: policies.Ptr(1.9)}},
		{FailurePercentage: &policies.FailurePercentage{Threshold: n}},
		{Consecutive5xx: n, ConsecutiveGatewayErrors: n, SuccessRate: &policies.SuccessRate{}, FailurePercentage: &policies.FailurePercentage{}},
	}
	for i, cb := range detectors {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			od := outlierDetection(&cb)
			m := od.ProtoReflect()
			fields := m.Descriptor().Fields()
			enforcing := 0
			for j := 0; j < fields.Len(); j++ {
				f := fields.Get(j)
				if !strings.HasPrefix(string(f.Name()), "enforcing_") {
					continue
				}
				enforcing++
				require.True(t, m.Has(f), "%s must be set explicitly: Envoy's defaults enforce some detectors at 100%%", f.Name())
			}
			require.GreaterOrEqual(t, enforcing, 7)
			require.Equal(t, on(cb.Consecutive5xx != nil), od.GetEnforcingConsecutive_5Xx().GetValue())
			require.Equal(t, on(cb.ConsecutiveGatewayErrors != nil), od.GetEnforcingConsecutiveGatewayFailure().GetValue())
			require.Equal(t, on(cb.SuccessRate != nil), od.GetEnforcingSuccessRate().GetValue())
			require.Equal(t, on(cb.FailurePercentage != nil), od.GetEnforcingFailurePercentage().GetValue())
			require.Zero(t, od.GetEnforcingConsecutiveLocalOriginFailure().GetValue())
			require.Zero(t, od.GetEnforcingLocalOriginSuccessRate().GetValue())
			require.Zero(t, od.GetEnforcingFailurePercentageLocalOrigin().GetValue())
		})
	}
	od := outlierDetection(&policies.CircuitBreaker{SuccessRate: &policies.SuccessRate{StdevFactor: policies.Ptr(1.9)}})
	require.Equal(t, uint32(1900), od.GetSuccessRateStdevFactor().GetValue(), "stdev factor is ×1000")
}

func on(b bool) uint32 {
	if b {
		return 100
	}
	return 0
}

func TestListenersPerFlavor(t *testing.T) {
	g, err := Translate(group(ir.FlavorGRPC, svc("a"), svc("b")))
	require.NoError(t, err)
	var names []string
	for _, l := range g.Listeners {
		names = append(names, l.GetName())
		require.NotNil(t, l.GetApiListener(), "gRPC gets API listeners only")
		require.Empty(t, l.GetFilterChains(), "never a copy of the HCM in filter_chains")
		require.Nil(t, l.GetAddress())
		hcm := &hcmv3.HttpConnectionManager{}
		require.NoError(t, l.GetApiListener().GetApiListener().UnmarshalTo(hcm))
		require.Equal(t, strings.Split(l.GetName(), ":")[0], hcm.GetRds().GetRouteConfigName())
		requireFaultThenRouter(t, hcm)
	}
	require.Equal(t, []string{"a", "a:8080", "b", "b:8080"}, names)

	e, err := Translate(group(ir.FlavorEnvoy, svc("a"), svc("b")))
	require.NoError(t, err)
	require.Len(t, e.Listeners, 1, "Envoy gets the socket listener only")
	l := e.Listeners[0]
	require.Nil(t, l.GetApiListener())
	require.Equal(t, "127.0.0.1", l.GetAddress().GetSocketAddress().GetAddress())
	hcm := &hcmv3.HttpConnectionManager{}
	require.NoError(t, l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm))
	require.Equal(t, OutboundRoute, hcm.GetRds().GetRouteConfigName())
	require.NotNil(t, hcm.GetRds().GetConfigSource().GetAds())
	requireFaultThenRouter(t, hcm)
}

func requireFaultThenRouter(t *testing.T, hcm *hcmv3.HttpConnectionManager) {
	t.Helper()
	fs := hcm.GetHttpFilters()
	require.Len(t, fs, 2)
	require.Equal(t, wellknown.Fault, fs[0].GetName())
	require.Equal(t, wellknown.Router, fs[1].GetName(), "the terminal filter comes last")
}

func TestExperimentsNeverChangeListeners(t *testing.T) {
	for _, flavor := range []ir.Flavor{ir.FlavorEnvoy, ir.FlavorGRPC} {
		plain, err := Translate(group(flavor, svc("a")))
		require.NoError(t, err)
		chaos := svc("a")
		chaos.Routes[0].Fault = &ir.Fault{Experiment: "e", Delay: &policies.Delay{Percent: 50, Fixed: policies.Duration(time.Second)}}
		faulty, err := Translate(group(flavor, chaos))
		require.NoError(t, err)
		require.Len(t, faulty.Listeners, len(plain.Listeners))
		for i := range plain.Listeners {
			require.True(t, proto.Equal(plain.Listeners[i], faulty.Listeners[i]), "%s: a listener change drains connections", flavor)
		}
		require.False(t, proto.Equal(plain.Routes[0], faulty.Routes[0]))
	}
}

func TestGRPCFaultHeadersBecomeARoute(t *testing.T) {
	s := svc("a")
	s.Routes[0].Fault = &ir.Fault{Experiment: "e", Headers: map[string]string{"X-Chaos": "on"},
		Abort: &policies.Abort{Percent: 100, GRPCStatus: policies.Ptr(14)}}
	g, err := Translate(group(ir.FlavorGRPC, s))
	require.NoError(t, err)
	routes := g.Routes[0].GetVirtualHosts()[0].GetRoutes()
	require.Len(t, routes, 2, "gRPC ignores HTTPFault.headers: the tagged calls get a route of their own")
	require.Equal(t, "x-chaos", routes[0].GetMatch().GetHeaders()[0].GetName())
	require.Contains(t, routes[0].GetTypedPerFilterConfig(), wellknown.Fault)
	require.Empty(t, routes[1].GetMatch().GetHeaders())
	require.Empty(t, routes[1].GetTypedPerFilterConfig(), "untagged calls are never hurt")

	e, err := Translate(group(ir.FlavorEnvoy, s))
	require.NoError(t, err)
	require.Len(t, e.Routes[0].GetVirtualHosts()[0].GetRoutes(), 1, "Envoy matches the headers in the filter")
}

func TestGRPCClustersCarryOnlyWhatGRPCReads(t *testing.T) {
	s := svc("a")
	s.Protocol = policies.ProtocolGRPC
	s.Cluster.Bulkhead = &policies.Bulkhead{MaxConnections: policies.Ptr(1), MaxRequests: policies.Ptr(10), MaxRequestsPerConnection: policies.Ptr(5)}
	s.Cluster.RetryBudget = &policies.Budget{Percent: policies.Ptr(20.0)}
	s.Cluster.HealthCheck = &policies.HealthCheck{TCP: &policies.TCPHealthCheck{}, Interval: policies.Dur(time.Second),
		Timeout: policies.Dur(time.Second), UnhealthyThreshold: policies.Ptr(1), HealthyThreshold: policies.Ptr(1)}
	c, err := buildCluster(ir.FlavorGRPC, s)
	require.NoError(t, err)
	require.Empty(t, c.GetHealthChecks())
	require.Empty(t, c.GetTypedExtensionProtocolOptions())
	th := c.GetCircuitBreakers().GetThresholds()
	require.Len(t, th, 1)
	require.Equal(t, uint32(10), th[0].GetMaxRequests().GetValue())
	require.Nil(t, th[0].GetMaxConnections())
	require.Nil(t, th[0].GetRetryBudget())

	e, err := buildCluster(ir.FlavorEnvoy, s)
	require.NoError(t, err)
	require.Len(t, e.GetHealthChecks(), 1)
	require.Contains(t, e.GetTypedExtensionProtocolOptions(), HTTPProtocolOptionsKey)
	require.NotNil(t, e.GetCircuitBreakers().GetThresholds()[0].GetRetryBudget())
}

// TestEveryFieldNameIsKnown guards the reflection in TestEveryEnforcingFieldIsSet.
func TestEveryFieldNameIsKnown(t *testing.T) {
	var names []protoreflect.Name
	fields := (&clusterv3.OutlierDetection{}).ProtoReflect().Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		names = append(names, fields.Get(i).Name())
	}
	require.Contains(t, names, protoreflect.Name("enforcing_consecutive_5xx"))
}

func TestRetryPolicyNeverModifiesTheIR(t *testing.T) {
	r := retry(2, "5xx", "reset", "unavailable")
	r.On = r.On[:3:3]
	r.StatusCodes, r.Methods = []int{503}, []string{"GET", "PUT"}
	before := fmt.Sprint(r.On, r.Methods)
	for _, f := range []ir.Flavor{ir.FlavorEnvoy, ir.FlavorGRPC} {
		_, err := retryPolicy(f, r)
		require.NoError(t, err)
	}
	require.Equal(t, before, fmt.Sprint(r.On, r.Methods))
	big := retry(1, "reset", "5xx")
	big.On = append(make([]string, 0, 10), big.On...)
	big.StatusCodes = []int{503}
	p, err := retryPolicy(ir.FlavorEnvoy, big)
	require.NoError(t, err)
	require.Equal(t, "5xx,reset,retriable-status-codes", p.GetRetryOn())
	require.Equal(t, []string{"reset", "5xx"}, big.On)
}
