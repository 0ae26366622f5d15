package xdsserver

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/internal/meshtest"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver/seal"
)

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
