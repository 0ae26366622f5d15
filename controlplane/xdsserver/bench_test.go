package xdsserver

import (
	"fmt"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/internal/meshtest"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver/seal"
)

// BenchmarkSnapshotBuild measures what a build adds after translation:
// encoding every resource once, sealing it, hashing the versions.
func BenchmarkSnapshotBuild(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		res := meshtest.RenderMesh(b, n)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := seal.NewSnapshot(res); err != nil {
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
	res := meshtest.RenderMesh(b, 1000)
	sealed, _, err := seal.NewSnapshot(res)
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
				for _, t := range seal.TypeURLs {
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
	snap, _, err := seal.NewSnapshot(meshtest.RenderMesh(b, 1000))
	require.NoError(b, err)
	g := NewCache()
	node := &corev3.Node{Id: "n", Cluster: "svc-00000", UserAgentName: "envoy"}
	require.NoError(b, g.SetSnapshot(b.Context(), NodeHash{}.ID(node), snap))
	ch := make(chan cachev3.Response, 1)
	b.ReportAllocs()
	for b.Loop() {
		for _, t := range seal.TypeURLs {
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
