package seal

import (
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/bulwarkmesh/bulwark/controlplane/internal/meshtest"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// A change to one cluster only changes that cluster's version, and the
// version of its endpoints (delta) and of the endpoint type (state of the
// world), so Envoy's warming cluster gets its endpoints again. The other
// clusters' endpoints keep their versions, and listeners and routes do not
// move.
func TestClusterChangeMovesItsEndpointsVersion(t *testing.T) {
	before := meshtest.RenderMesh(t, 3)
	after := cloneResources(before)
	changed := after.Clusters[1]
	changed.ConnectTimeout = durationpb.New(7 * time.Second)

	s1, v1, err := NewSnapshot(before)
	require.NoError(t, err)
	s2, v2, err := NewSnapshot(after)
	require.NoError(t, err)

	require.NotEqual(t, v1[resourcev3.ClusterType], v2[resourcev3.ClusterType])
	require.NotEqual(t, v1[resourcev3.EndpointType], v2[resourcev3.EndpointType], "SotW: the endpoints go out again")
	require.Equal(t, v1[resourcev3.ListenerType], v2[resourcev3.ListenerType])
	require.Equal(t, v1[resourcev3.RouteType], v2[resourcev3.RouteType])

	eds1, eds2 := s1.GetVersionMap(resourcev3.EndpointType), s2.GetVersionMap(resourcev3.EndpointType)
	require.Len(t, eds2, len(after.Endpoints))
	for _, e := range after.Endpoints {
		name := e.GetClusterName()
		if name == changed.GetName() {
			require.NotEqual(t, eds1[name], eds2[name], "delta: the changed cluster's endpoints go out again")
		} else {
			require.Equal(t, eds1[name], eds2[name], "delta: %s is untouched", name)
		}
	}

	// Rebuilding the same content gives the same versions: nothing is pushed.
	s3, v3, err := NewSnapshot(cloneResources(after))
	require.NoError(t, err)
	require.Equal(t, v2, v3)
	require.Equal(t, s2.GetVersionMap(resourcev3.EndpointType), s3.GetVersionMap(resourcev3.EndpointType))
}

func cloneResources(r *translate.Resources) *translate.Resources {
	out := &translate.Resources{}
	for _, l := range r.Listeners {
		out.Listeners = append(out.Listeners, proto.Clone(l).(*listenerv3.Listener))
	}
	for _, x := range r.Routes {
		out.Routes = append(out.Routes, proto.Clone(x).(*routev3.RouteConfiguration))
	}
	for _, c := range r.Clusters {
		out.Clusters = append(out.Clusters, proto.Clone(c).(*clusterv3.Cluster))
	}
	for _, e := range r.Endpoints {
		out.Endpoints = append(out.Endpoints, proto.Clone(e).(*endpointv3.ClusterLoadAssignment))
	}
	return out
}
