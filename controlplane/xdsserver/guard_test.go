package xdsserver

import (
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/internal/meshtest"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver/seal"
)

// TestWatchBeforeFirstSnapshotIsAnswered: a proxy that reconnects to a
// restarted control plane resumes with the version it ACKed before; when the
// first build yields that same version, its new stream must still be
// answered, or the proxy never ACKs on it.
func TestWatchBeforeFirstSnapshotIsAnswered(t *testing.T) {
	res := meshtest.RenderMesh(t, 2)
	snap, versions, err := seal.NewSnapshot(res)
	require.NoError(t, err)
	g := NewCache()
	node := &corev3.Node{Id: "envoy-1", Cluster: "svc-00000", UserAgentName: "envoy"}
	group := NodeHash{}.ID(node)
	for _, typ := range seal.TypeURLs {
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

// TestSotWAnswersAreSharedAndFollowTheCacheRules: the streams of a group get
// one shared answer per type, version and names; a named request gets only
// its names; a stream that has everything waits; a rejected version is held
// back until the next one.
func TestSotWAnswersAreSharedAndFollowTheCacheRules(t *testing.T) {
	res := meshtest.RenderMesh(t, 3)
	snap, versions, err := seal.NewSnapshot(res)
	require.NoError(t, err)
	g := NewCache()
	node := func(id string) *corev3.Node {
		return &corev3.Node{Id: id, Cluster: "svc-00000", UserAgentName: "envoy"}
	}
	group := NodeHash{}.ID(node("a"))
	require.NoError(t, g.SetSnapshot(t.Context(), group, snap))
	watch := func(id, typ, version string, names []string) (chan cachev3.Response, func()) {
		ch := make(chan cachev3.Response, 1)
		cancel, err := g.CreateWatch(&discoveryv3.DiscoveryRequest{Node: node(id), TypeUrl: typ, VersionInfo: version, ResourceNames: names},
			stream.NewSotwSubscription(names, true), ch)
		require.NoError(t, err)
		return ch, cancel
	}
	get := func(ch chan cachev3.Response) *discoveryv3.DiscoveryResponse {
		t.Helper()
		select {
		case r := <-ch:
			out, err := r.GetDiscoveryResponse()
			require.NoError(t, err)
			return out
		default:
			t.Fatal("no answer")
			return nil
		}
	}

	// Two streams, wildcard clusters: the same encoded resources.
	a, _ := watch("a", resourcev3.ClusterType, "", nil)
	b, _ := watch("b", resourcev3.ClusterType, "", nil)
	ra, rb := get(a), get(b)
	require.Len(t, ra.GetResources(), len(res.Clusters))
	require.Same(t, ra.GetResources()[0], rb.GetResources()[0], "one answer for the group")
	require.NotSame(t, ra, rb, "each stream writes its own nonce")
	require.Equal(t, versions[resourcev3.ClusterType], ra.GetVersionInfo())

	// Named: only the names asked for.
	name := res.Endpoints[1].GetClusterName()
	e, _ := watch("a", resourcev3.EndpointType, "", []string{name, "no-such-cluster"})
	re := get(e)
	require.Len(t, re.GetResources(), 1)

	// Up to date (the ACK of what the stream was sent): the watch waits, and
	// cancelling it drops it.
	ch := make(chan cachev3.Response, 1)
	sub := stream.NewSotwSubscription(nil, true)
	_, err = g.CreateWatch(&discoveryv3.DiscoveryRequest{Node: node("a"), TypeUrl: resourcev3.RouteType}, sub, ch)
	require.NoError(t, err)
	sent := <-ch
	sub.SetReturnedResources(sent.GetReturnedResources())
	cancel, err := g.CreateWatch(&discoveryv3.DiscoveryRequest{Node: node("a"), TypeUrl: resourcev3.RouteType, VersionInfo: sent.GetResponseVersion()}, sub, ch)
	require.NoError(t, err)
	require.Equal(t, 1, g.parkedCount())
	cancel()
	require.Zero(t, g.parkedCount())

	// A NACK of the current route configuration by a proxy that keeps an
	// older one: held until another version.
	g.Reject("c", 1, group, resourcev3.RouteType, versions[resourcev3.RouteType], nil)
	l, _ := watch("c", resourcev3.RouteType, "older", nil)
	require.Equal(t, 1, g.parkedCount())
	require.NoError(t, g.SetSnapshot(t.Context(), group, snap))
	require.Equal(t, 1, g.parkedCount(), "the same version again is not sent")
	snap2, versions2, err := seal.NewSnapshot(meshtest.RenderMesh(t, 4))
	require.NoError(t, err)
	require.NotEqual(t, versions[resourcev3.RouteType], versions2[resourcev3.RouteType])
	require.NoError(t, g.SetSnapshot(t.Context(), group, snap2))
	require.Equal(t, versions2[resourcev3.RouteType], get(l).GetVersionInfo())
	require.Zero(t, g.parkedCount())
}
