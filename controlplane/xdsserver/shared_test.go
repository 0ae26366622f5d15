package xdsserver

import (
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
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
