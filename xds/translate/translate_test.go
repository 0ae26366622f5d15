package translate

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/bulwarkmesh/bulwark/xds/ir"
)

func marshalAll(t *testing.T, r *Resources) [][]byte {
	t.Helper()
	var out [][]byte
	m := r.ByType()
	for _, typ := range []resourcev3.Type{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		for _, m := range m[typ] {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
			require.NoError(t, err)
			out = append(out, b)
		}
	}
	return out
}

func TestTranslateIsDeterministic(t *testing.T) {
	build := func() *ir.Xds {
		a, b := svc("a"), svc("b")
		a.Fallback = "b"
		a.Routes[0].Retry = retry(2, "reset", "5xx")
		a.Routes[0].Retry.Methods = []string{"PUT", "GET"}
		return group(ir.FlavorEnvoy, b, a) // unsorted on purpose
	}
	r1, err := Translate(build())
	require.NoError(t, err)
	r2, err := Translate(build())
	require.NoError(t, err)
	require.Equal(t, marshalAll(t, r1), marshalAll(t, r2), "identical inputs give identical bytes")
	require.Equal(t, "a", r1.Clusters[0].GetName(), "sorted by name")
	for _, list := range [][]*clusterv3.Cluster{r1.Clusters, r2.Clusters} {
		require.Equal(t, []string{"a", "a~fallback", "b"}, []string{list[0].GetName(), list[1].GetName(), list[2].GetName()})
	}
}

func TestOneBadServiceNeverStopsTheOthers(t *testing.T) {
	bad := svc("bad")
	bad.Port = 0
	withFallback := svc("good")
	withFallback.Fallback = "bad"
	r, err := Translate(group(ir.FlavorGRPC, bad, withFallback, svc("other")))
	require.Error(t, err)
	require.ErrorContains(t, err, "service bad left out: services[bad].port")
	require.ErrorContains(t, err, `services[good].fallback: service "bad" is not in the group; translated without fallback`)
	require.NoError(t, Check(r))
	var names []string
	for _, c := range r.Clusters {
		names = append(names, c.GetName())
	}
	require.Equal(t, []string{"good", "other"}, names, "no aggregate cluster pointing at a missing cluster")
	require.Equal(t, "good", r.Routes[0].GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster())
}

func TestTranslateRejectsABadGroup(t *testing.T) {
	r, err := Translate(&ir.Xds{Flavor: "mystery"})
	require.Nil(t, r)
	require.ErrorContains(t, err, `flavor: must be "envoy" or "grpc"`)
	r, err = Translate(&ir.Xds{Flavor: ir.FlavorEnvoy, Outbound: ir.Address{Host: "127.0.0.1"}})
	require.Nil(t, r)
	require.ErrorContains(t, err, "outbound.port")
	_, err = TranslateService("mystery", svc("a"))
	require.Error(t, err)
}

func TestCacheSharesObjects(t *testing.T) {
	c := NewCache()
	a1, err := c.TranslateService(ir.FlavorEnvoy, svc("a"))
	require.NoError(t, err)
	a2, err := c.TranslateService(ir.FlavorEnvoy, svc("a")) // equal content, another object
	require.NoError(t, err)
	require.Same(t, a1, a2, "one translation per distinct input")
	g, err := c.TranslateService(ir.FlavorGRPC, svc("a"))
	require.NoError(t, err)
	require.NotSame(t, a1, g, "the flavor is part of the input")
	changed := svc("a")
	changed.Port = 9090
	a3, err := c.TranslateService(ir.FlavorEnvoy, changed)
	require.NoError(t, err)
	require.NotSame(t, a1, a3)
	require.Equal(t, 3, c.Len())

	bad := svc("a")
	bad.Port = -1
	_, err1 := c.TranslateService(ir.FlavorEnvoy, bad)
	_, err2 := c.TranslateService(ir.FlavorEnvoy, bad)
	require.Error(t, err1)
	require.Equal(t, err1, err2, "errors are memoized too")

	// Two groups built through the cache share the service's objects.
	r1, err := TranslateUsing(group(ir.FlavorEnvoy, svc("a")), c.TranslateService)
	require.NoError(t, err)
	r2, err := TranslateUsing(group(ir.FlavorEnvoy, svc("a")), c.TranslateService)
	require.NoError(t, err)
	require.Same(t, r1.Clusters[0], r2.Clusters[0])
	require.Same(t, r1.Routes[0].GetVirtualHosts()[0], r2.Routes[0].GetVirtualHosts()[0])

	require.Equal(t, 0, c.Sweep(), "everything was used since the cache was made")
	_, _ = c.TranslateService(ir.FlavorEnvoy, svc("a"))
	require.Equal(t, 3, c.Sweep(), "grpc a, port-9090 a and bad a were not used in this round")
	require.Equal(t, 1, c.Len())
}

func TestByTypeHasEveryType(t *testing.T) {
	r, err := Translate(group(ir.FlavorGRPC))
	require.NoError(t, err)
	m := r.ByType()
	for _, typ := range []resourcev3.Type{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
		v, ok := m[typ]
		require.True(t, ok, typ)
		require.Empty(t, v)
	}
	require.NoError(t, Check(r), "an empty group is consistent")
	require.Zero(t, r.Count())
}

func TestCheckCatchesInconsistencies(t *testing.T) {
	build := func(flavor ir.Flavor) *Resources {
		a := svc("a")
		a.Fallback = "b"
		r, err := Translate(group(flavor, a, svc("b")))
		require.NoError(t, err)
		require.NoError(t, Check(r))
		return r
	}
	cases := []struct {
		name   string
		flavor ir.Flavor
		break_ func(r *Resources)
		want   string
	}{
		{"missing load assignment", ir.FlavorEnvoy, func(r *Resources) { r.Endpoints = r.Endpoints[:1] }, "mismatched"},
		{"orphan load assignment", ir.FlavorEnvoy, func(r *Resources) {
			r.Endpoints = append(r.Endpoints, &endpointv3.ClusterLoadAssignment{ClusterName: "ghost"})
		}, "mismatched"},
		{"missing route configuration", ir.FlavorEnvoy, func(r *Resources) { r.Routes = nil }, "mismatched"},
		{"api listener without routes", ir.FlavorGRPC, func(r *Resources) { r.Routes = r.Routes[1:] }, `listener a: route configuration "a" does not exist`},
		{"unreferenced route", ir.FlavorGRPC, func(r *Resources) {
			r.Routes = append(r.Routes, &routev3.RouteConfiguration{Name: "ghost"})
		}, "mismatched"},
		{"route to missing cluster", ir.FlavorGRPC, func(r *Resources) {
			r.Clusters = append(r.Clusters[:1:1], r.Clusters[2:]...)
		}, `cluster "a~fallback" does not exist`},
		{"aggregate of missing cluster", ir.FlavorEnvoy, func(r *Resources) {
			r.Clusters = r.Clusters[:2]
			r.Endpoints = r.Endpoints[:1]
		}, `aggregated cluster "b" does not exist`},
		{"duplicate", ir.FlavorEnvoy, func(r *Resources) { r.Clusters = append(r.Clusters, r.Clusters[0]) }, "cluster a: duplicate name"},
		{"invalid resource", ir.FlavorEnvoy, func(r *Resources) {
			c := proto.Clone(r.Clusters[2]).(*clusterv3.Cluster)
			c.ConnectTimeout.Seconds = -1
			r.Clusters[2] = c
		}, "cluster b: invalid Cluster.ConnectTimeout"},
		{"gRPC endpoint weight 0", ir.FlavorGRPC, func(r *Resources) {
			e := proto.Clone(r.Endpoints[0]).(*endpointv3.ClusterLoadAssignment)
			e.Endpoints[0].LbEndpoints[0].LoadBalancingWeight = wrapperspb.UInt32(0)
			r.Endpoints[0] = e
		}, "weight 0 is rejected by gRPC"},
		{"gRPC locality without ID", ir.FlavorGRPC, func(r *Resources) {
			e := proto.Clone(r.Endpoints[0]).(*endpointv3.ClusterLoadAssignment)
			e.Endpoints[0].Locality = nil
			r.Endpoints[0] = e
		}, "a locality without an ID is rejected by gRPC"},
		{"gRPC CLUSTER_PROVIDED", ir.FlavorGRPC, func(r *Resources) {
			c := proto.Clone(r.Clusters[1]).(*clusterv3.Cluster)
			c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
			r.Clusters[1] = c
		}, "lb_policy CLUSTER_PROVIDED is rejected by gRPC"},
		{"Envoy aggregate without CLUSTER_PROVIDED", ir.FlavorEnvoy, func(r *Resources) {
			c := proto.Clone(r.Clusters[1]).(*clusterv3.Cluster)
			c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
			r.Clusters[1] = c
		}, "needs lb_policy CLUSTER_PROVIDED for Envoy"},
		{"duplicate domain", ir.FlavorEnvoy, func(r *Resources) {
			rc := proto.Clone(r.Routes[0]).(*routev3.RouteConfiguration)
			rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{Name: "again", Domains: []string{"b:8080"}})
			r.Routes[0] = rc
		}, `domain "b:8080" is served by virtual hosts b and again`},
		{"gRPC zero retries", ir.FlavorGRPC, func(r *Resources) {
			rc := proto.Clone(r.Routes[0]).(*routev3.RouteConfiguration)
			rc.VirtualHosts[0].Routes[0].GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "unavailable", NumRetries: wrapperspb.UInt32(0)}
			r.Routes[0] = rc
		}, "num_retries must be at least 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := build(tc.flavor)
			tc.break_(r)
			err := Check(r)
			require.ErrorContains(t, err, tc.want)
		})
	}
	require.Error(t, Check(nil))
	require.Error(t, CheckReferences(nil))

	// CheckReferences trusts the per-service pieces' ValidateAll.
	r := build(ir.FlavorEnvoy)
	c := proto.Clone(r.Clusters[2]).(*clusterv3.Cluster)
	c.ConnectTimeout.Seconds = -1
	r.Clusters[2] = c
	require.NoError(t, CheckReferences(r))
	require.Error(t, Check(r))
}
