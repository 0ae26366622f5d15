package xdsserver

import (
	"context"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/bulwarkmesh/bulwark/controlplane/internal/meshtest"
	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver/seal"
)

// The ADS server runs a goroutine per stream and gRPC its own; every test
// must stop them all.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// adsEnv is the xDS server on a loopback port, with one ADS stream to it.
type adsEnv struct {
	cache   *Cache
	tracker *Tracker
	stream  discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
}

func startADS(t *testing.T) *adsEnv {
	t.Helper()
	cache := NewCache()
	tr := NewTracker("test", cache, metrics.New(TypeLabels()...))
	ctx, cancel := context.WithCancel(context.Background())
	gs, err := NewServer(ctx, TLS{}, cache, tr)
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(lis) }()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	sctx, scancel := context.WithCancel(context.Background())
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(sctx)
	require.NoError(t, err)
	t.Cleanup(func() {
		scancel()
		require.NoError(t, cc.Close())
		cancel()
		gs.Stop()
		require.NoError(t, <-served)
	})
	return &adsEnv{cache: cache, tracker: tr, stream: stream}
}

// recv waits for the next response on the stream.
func (e *adsEnv) recv(t *testing.T) *discoveryv3.DiscoveryResponse {
	t.Helper()
	got := make(chan *discoveryv3.DiscoveryResponse, 1)
	failed := make(chan error, 1)
	go func() {
		resp, err := e.stream.Recv()
		if err != nil {
			failed <- err
			return
		}
		got <- resp
	}()
	select {
	case resp := <-got:
		return resp
	case err := <-failed:
		t.Fatalf("stream: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no response within 10s")
	}
	return nil
}

// A proxy's request is answered once its group has a snapshot; its ACK and
// its NACK of a later version reach the tracker, which then reports the
// proxy converged, and rejecting.
func TestADSStreamIsAnsweredAndFollowed(t *testing.T) {
	e := startADS(t)
	node := &corev3.Node{Id: "envoy-1", Cluster: "svc-00000", UserAgentName: "envoy"}
	group := NodeHash{}.ID(node)
	typ := resourcev3.ClusterType

	require.NoError(t, e.stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typ}))
	// The request registers the proxy before any snapshot exists.
	require.Eventually(t, func() bool {
		_, ok := e.tracker.Proxy("envoy-1")
		return ok
	}, 10*time.Second, 10*time.Millisecond, "the proxy is not tracked")
	require.Equal(t, map[string]bool{group: true}, e.tracker.Groups())

	snap, versions, err := seal.NewSnapshot(meshtest.RenderMesh(t, 2))
	require.NoError(t, err)
	e.tracker.Published(Publication{Group: group, Versions: versions, Revision: 5})
	require.NoError(t, e.cache.SetSnapshot(t.Context(), group, snap))
	first := e.recv(t)
	require.Equal(t, versions[typ], first.GetVersionInfo())
	require.NotEmpty(t, first.GetResources())

	require.NoError(t, e.stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typ, VersionInfo: first.GetVersionInfo(), ResponseNonce: first.GetNonce()}))
	require.Eventually(t, func() bool {
		p, _ := e.tracker.Proxy("envoy-1")
		ts := p.Types["clusters"]
		return ts != nil && ts.Acked == versions[typ] && ts.AckedRevision == 5
	}, 10*time.Second, 10*time.Millisecond, "the ACK is not tracked")

	// A new version, which the proxy rejects.
	snap2, versions2, err := seal.NewSnapshot(meshtest.RenderMesh(t, 3))
	require.NoError(t, err)
	require.NotEqual(t, versions[typ], versions2[typ])
	e.tracker.Published(Publication{Group: group, Versions: versions2, Revision: 6})
	require.NoError(t, e.cache.SetSnapshot(t.Context(), group, snap2))
	second := e.recv(t)
	require.Equal(t, versions2[typ], second.GetVersionInfo())
	require.NoError(t, e.stream.Send(&discoveryv3.DiscoveryRequest{
		Node: node, TypeUrl: typ, VersionInfo: first.GetVersionInfo(), ResponseNonce: second.GetNonce(),
		ErrorDetail: &statuspb.Status{Message: "cluster rejected"},
	}))
	require.Eventually(t, func() bool {
		p, _ := e.tracker.Proxy("envoy-1")
		return p.Rejecting()
	}, 10*time.Second, 10*time.Millisecond, "the NACK is not tracked")
	p, _ := e.tracker.Proxy("envoy-1")
	require.False(t, p.Converged)
	ts := p.Types["clusters"]
	require.Equal(t, versions[typ], ts.Acked, "still running what it accepted")
	require.Equal(t, versions2[typ], ts.LastNack.Version)
	require.Equal(t, "cluster rejected", ts.LastNack.Error)
}
