package controlplane

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds"
	"github.com/bulwarkmesh/bulwark/xds/ir"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// meshSet is n services with two endpoints and a policy each, as the fleet
// simulator seeds them.
func meshSet(n int) *policies.Set {
	set := policies.NewSet()
	d := policies.Dur
	for i := range n {
		name := fmt.Sprintf("svc-%05d", i)
		set.Add(&policies.Service{
			TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindService},
			Metadata: policies.Metadata{Name: name},
			Spec: policies.ServiceSpec{Protocol: policies.ProtocolHTTP, Port: 8080, Endpoints: []policies.Endpoint{
				{Address: fmt.Sprintf("10.%d.%d.10", i/256%256, i%256), Port: 8080, Zone: "z1", Weight: 1},
				{Address: fmt.Sprintf("10.%d.%d.11", i/256%256, i%256), Port: 8080, Zone: "z2", Weight: 1},
			}},
		})
		set.Add(&policies.ResiliencePolicy{
			TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindPolicy},
			Metadata: policies.Metadata{Name: name},
			Spec: policies.PolicySpec{
				Target:   policies.Target{Service: name},
				Timeouts: &policies.Timeouts{Connect: d(time.Second), Request: d(3 * time.Second)},
				Retries: &policies.Retries{
					Attempts: policies.Ptr(2), PerTryTimeout: d(time.Second), On: []string{"5xx", "reset"},
					Methods: []string{"GET"}, Backoff: &policies.Backoff{Base: d(25 * time.Millisecond), Max: d(250 * time.Millisecond)},
					Budget: &policies.Budget{Percent: policies.Ptr(20.0), MinConcurrency: policies.Ptr(3)},
				},
				CircuitBreaker: &policies.CircuitBreaker{Consecutive5xx: policies.Ptr(5), Interval: d(10 * time.Second), BaseEjectionTime: d(30 * time.Second), MaxEjectionPercent: policies.Ptr(50)},
				Bulkhead:       &policies.Bulkhead{MaxConnections: policies.Ptr(100), MaxPendingRequests: policies.Ptr(50), MaxRequests: policies.Ptr(200)},
			},
		})
	}
	return set
}

func renderMesh(tb testing.TB, n int) *translate.Resources {
	tb.Helper()
	res, errs := xds.Render(meshSet(n), ir.FlavorEnvoy, "svc-00000")
	require.Empty(tb, errs)
	require.NotNil(tb, res)
	return res
}

// BenchmarkSnapshotBuild measures what a build adds after translation:
// encoding every resource once, sealing it, hashing the versions.
func BenchmarkSnapshotBuild(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		res := renderMesh(b, n)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := newSnapshot(res); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPushPerStream measures the control plane's work for one stream
// of a group when its snapshot changes: the cache's response for every
// type, serialized. Sealed resources are encoded once per snapshot, not per
// stream; "unsealed" is what go-control-plane does on its own.
func BenchmarkPushPerStream(b *testing.B) {
	res := renderMesh(b, 1000)
	sealed, _, err := newSnapshot(res)
	require.NoError(b, err)
	plain, err := cachev3.NewSnapshot("v1", res.ByType())
	require.NoError(b, err)
	for _, c := range []struct {
		name string
		snap *cachev3.Snapshot
	}{{"sealed", sealed}, {"unsealed", plain}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, t := range typeOrder {
					pushOnce(b, c.snap, t)
				}
			}
		})
	}
}

// BenchmarkPushPerStreamShared is the same push through the control
// plane's own state-of-the-world answers: built once per group, type and
// version, then shared by every stream (what a stream of a group costs once
// the first one was answered).
func BenchmarkPushPerStreamShared(b *testing.B) {
	snap, _, err := newSnapshot(renderMesh(b, 1000))
	require.NoError(b, err)
	g := newGuardedCache()
	node := &corev3.Node{Id: "n", Cluster: "svc-00000", UserAgentName: "envoy"}
	require.NoError(b, g.SetSnapshot(b.Context(), nodeHash{}.ID(node), snap))
	ch := make(chan cachev3.Response, 1)
	b.ReportAllocs()
	for b.Loop() {
		for _, t := range typeOrder {
			req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: t}
			if _, err := g.CreateWatch(req, stream.NewSotwSubscription(nil, true), ch); err != nil {
				b.Fatal(err)
			}
			if _, err := (<-ch).GetDiscoveryResponse(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// pushOnce asks a fresh cache for one type as a new wildcard stream would,
// and serializes the answer as the server does before sending it.
func pushOnce(tb testing.TB, snap *cachev3.Snapshot, typeURL string) *discoveryv3.DiscoveryResponse {
	tb.Helper()
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	node := &corev3.Node{Id: "n"}
	if err := cache.SetSnapshot(tb.Context(), "n", snap); err != nil {
		tb.Fatal(err)
	}
	ch := make(chan cachev3.Response, 1)
	req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typeURL}
	sub := stream.NewSotwSubscription(nil, true)
	if _, err := cache.CreateWatch(req, sub, ch); err != nil {
		tb.Fatal(err)
	}
	out, err := (<-ch).GetDiscoveryResponse()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// BenchmarkGroupBuild measures one group's full build as the builder runs
// it on every change: resolve, translate, check, encode and seal, hash.
func BenchmarkGroupBuild(b *testing.B) {
	for _, n := range []int{100, 1000} {
		set := meshSet(n)
		bl := newBuilder(slog.New(slog.DiscardHandler), newGuardedCache(), nil, newMetrics())
		bl.set = set
		k := GroupKey{Flavor: ir.FlavorEnvoy, Service: "svc-00000", Outbound: DefaultOutbound}
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bl.prepare(k); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
