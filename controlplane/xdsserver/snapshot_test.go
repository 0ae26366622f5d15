package xdsserver

import (
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
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
