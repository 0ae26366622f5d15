package controlplane

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/stretchr/testify/require"
)

// TestWatchBeforeFirstSnapshotIsAnswered: a proxy that reconnects to a
// restarted control plane resumes with the version it ACKed before; when the
// first build yields that same version, its new stream must still be
// answered, or the proxy never ACKs on it.
func TestWatchBeforeFirstSnapshotIsAnswered(t *testing.T) {
	res := renderMesh(t, 2)
	snap, versions, err := newSnapshot(res)
	require.NoError(t, err)
	g := newGuardedCache()
	node := &corev3.Node{Id: "envoy-1", Cluster: "svc-00000", UserAgentName: "envoy"}
	group := nodeHash{}.ID(node)
	for _, typ := range typeOrder {
		ch := make(chan cachev3.Response, 1)
		req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typ, VersionInfo: versions[typ]}
		_, err := g.CreateWatch(req, stream.NewSotwSubscription(nil, true), ch)
		require.NoError(t, err)
		require.Equal(t, 1, g.parkedCount(), "no snapshot yet: the watch waits")

		require.NoError(t, g.SetSnapshot(t.Context(), group, snap))
		require.Zero(t, g.parkedCount())
		select {
		case resp := <-ch:
			require.Equal(t, versions[typ], resp.GetResponseVersion())
			out, err := resp.GetDiscoveryResponse()
			require.NoError(t, err)
			require.NotEmpty(t, out.GetResources(), typ)
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the stream was never answered", typ)
		}
		g.ClearSnapshot(group)
	}
}
