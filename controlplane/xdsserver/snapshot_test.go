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
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/bulwarkmesh/bulwark/controlplane/internal/meshtest"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver/seal"
)

// When clusters and endpoints change together, delta streams are first
// given the new clusters with the previous endpoints.
func TestClustersFirstKeepsThePreviousEndpoints(t *testing.T) {
	before := meshtest.RenderMesh(t, 2)
	after := meshtest.RenderMesh(t, 2)
	after.Clusters[0].ConnectTimeout = durationpb.New(9 * time.Second)
	s1, _, err := seal.NewSnapshot(before)
	require.NoError(t, err)
	s2, _, err := seal.NewSnapshot(after)
	require.NoError(t, err)

	interim := clustersFirst(s1, s2)
	require.NotNil(t, interim)
	require.Equal(t, s2.GetVersion(resourcev3.ClusterType), interim.GetVersion(resourcev3.ClusterType))
	require.Equal(t, s1.GetVersion(resourcev3.EndpointType), interim.GetVersion(resourcev3.EndpointType))
	require.Equal(t, s1.GetVersionMap(resourcev3.EndpointType), interim.GetVersionMap(resourcev3.EndpointType))
	require.Equal(t, s2.GetVersionMap(resourcev3.ClusterType), interim.GetVersionMap(resourcev3.ClusterType))
	require.Nil(t, clustersFirst(s2, s2), "nothing changed: no interim step")
	require.Nil(t, clustersFirst(nil, s2), "a group's first snapshot needs none")
}

// An Envoy that got a snapshot's endpoints before that snapshot's clusters
// (its EDS request was answered while it held its CDS ACK) warms the
// changed clusters when their CDS response arrives and asks for EDS again
// with the version it has: that request is answered, once.
func TestEDSIsOwedAfterCDS(t *testing.T) {
	g := NewCache()
	node := &corev3.Node{Id: "envoy-1", Cluster: "svc-00000", UserAgentName: "envoy"}
	group := g.hash.ID(node)
	snap, _, err := seal.NewSnapshot(meshtest.RenderMesh(t, 2))
	require.NoError(t, err)
	require.NoError(t, g.SetSnapshot(t.Context(), group, snap))
	eds := snap.GetVersion(resourcev3.EndpointType)
	var names []string
	for name := range snap.GetResources(resourcev3.EndpointType) {
		names = append(names, name)
	}
	watch := func() bool {
		req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, VersionInfo: eds, ResourceNames: names}
		g.NoteRequest(req, nil, 7)
		sub := stream.NewSotwSubscription(names, false)
		returned := map[string]string{}
		for _, n := range names {
			returned[n] = eds
		}
		sub.SetReturnedResources(returned)
		ch := make(chan cachev3.Response, 1)
		cancel, err := g.CreateWatch(req, sub, ch)
		require.NoError(t, err)
		defer cancel()
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	require.False(t, watch(), "up to date: the request waits")
	g.Sent(7, resourcev3.ClusterType)
	require.True(t, watch(), "a CDS response went out since: EDS is sent again")
	g.Sent(7, resourcev3.EndpointType)
	require.False(t, watch(), "once")
}
