package xdsserver

import (
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/internal/meshtest"
	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver/seal"
)

// Another replica's rejection, adopted here, holds the version back from
// that node on a stream that carries a version (a reconnect), not from a
// new process with nothing; it survives Forget while its group has no
// snapshot here (no proxy of it connected yet), and goes once the group
// has another version.
func TestAdoptedRejectionHoldsBackHere(t *testing.T) {
	res := meshtest.RenderMesh(t, 2)
	snap, versions, err := seal.NewSnapshot(res)
	require.NoError(t, err)
	g := NewCache()
	tr := NewTracker("here", g, metrics.New(TypeLabels()...))
	e := &nackEnv{t: t, g: g, group: g.hash.ID(envoyNode("n")), versions: versions}
	for _, c := range res.Endpoints {
		e.eds = append(e.eds, c.GetClusterName())
	}
	v := versions[resourcev3.EndpointType]
	tr.Adopt(Rejection{Node: "n", Type: resourcev3.EndpointType, Group: e.group, Version: v, All: true, Error: "bad endpoints"})
	g.Forget()
	require.Equal(t, 1, g.Rejections(), "kept while the group has no snapshot here")

	require.NoError(t, g.SetSnapshot(t.Context(), e.group, snap))
	require.False(t, e.watch("n", 9, "accepted-before", e.eds...), "a reconnect of the node that rejected it elsewhere is held")
	require.True(t, e.watch("n", 9, "", e.eds...), "a new process with nothing gets it once")
	require.True(t, e.watch("o", 10, "accepted-before", e.eds...), "another node is not held")

	next, _, err := seal.NewSnapshot(meshtest.RenderMesh(t, 3))
	require.NoError(t, err)
	require.NoError(t, g.SetSnapshot(t.Context(), e.group, next))
	g.Forget()
	require.Zero(t, g.Rejections(), "the group moved on")
}

// Another replica's delta rejection, adopted here, holds back from that
// node's delta stream the resource it rejected, by content, from the
// stream's first request, whatever versions the stream declares; the
// other resources are sent. A new process that declares nothing gets it
// once, another node gets it, and the record lasts while the group has
// the rejected content (per name, the newest content rejected).
func TestAdoptedDeltaRejectionHoldsBackHere(t *testing.T) {
	snap, versions, err := seal.NewSnapshot(meshtest.RenderMesh(t, 2))
	require.NoError(t, err)
	g := NewCache()
	tr := NewTracker("here", g, metrics.New(TypeLabels()...))
	group := g.hash.ID(envoyNode("n"))
	require.NoError(t, g.SetSnapshot(t.Context(), group, snap))
	clusters := snap.GetResourcesAndTTL(resourcev3.ClusterType)
	require.Greater(t, len(clusters), 1)
	var bad string
	for n := range clusters {
		if bad == "" || n < bad {
			bad = n
		}
	}
	b, err := cachev3.MarshalResource(clusters[bad].Resource)
	require.NoError(t, err)
	tr.Adopt(Rejection{Node: "n", Type: resourcev3.ClusterType, Group: group, Version: versions[resourcev3.ClusterType],
		Names: []string{bad}, Hashes: map[string]string{bad: cachev3.HashResource(b)}, Error: "bad cluster"})

	sent := func(node string, initial map[string]string) map[string]bool {
		t.Helper()
		ch := make(chan cachev3.DeltaResponse, 1)
		sub := stream.NewDeltaSubscription(nil, nil, initial, true)
		req := &discoveryv3.DeltaDiscoveryRequest{Node: envoyNode(node), TypeUrl: resourcev3.ClusterType}
		cancel, err := g.CreateDeltaWatch(req, sub, ch)
		require.NoError(t, err)
		if cancel != nil {
			defer cancel()
		}
		out := map[string]bool{}
		select {
		case resp := <-ch:
			dr, err := resp.GetDeltaDiscoveryResponse()
			require.NoError(t, err)
			for _, r := range dr.GetResources() {
				out[r.GetName()] = true
			}
		default:
		}
		return out
	}
	old := map[string]string{}
	for n := range clusters {
		old[n] = "accepted-before"
	}
	got := sent("n", old)
	require.False(t, got[bad], "a reconnect of the node that rejected it elsewhere is not sent it")
	require.Len(t, got, len(clusters)-1, "the other clusters are sent")
	require.True(t, sent("n", nil)[bad], "a new process with nothing gets it once")
	require.True(t, sent("o", old)[bad], "another node is sent it")

	g.Forget()
	require.Equal(t, 1, g.Rejections(), "kept while the group has the rejected content")
	tr.Adopt(Rejection{Node: "n", Type: resourcev3.ClusterType, Group: group, Version: "other",
		Hashes: map[string]string{bad: "other-content"}})
	g.Forget()
	require.Zero(t, g.Rejections(), "the cluster's newest rejected content is not the group's: dropped")
}
