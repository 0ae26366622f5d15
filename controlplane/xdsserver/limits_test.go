package xdsserver

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/bulwarkmesh/bulwark/controlplane/internal/meshtest"
	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver/limits"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver/seal"
)

// xdsEnv is a real xDS server on loopback over a Cache and a Tracker.
type xdsEnv struct {
	t       *testing.T
	cache   *Cache
	tracker *Tracker
	metrics *metrics.Metrics
	addr    string
}

func newXDSEnv(t *testing.T, options ...Option) *xdsEnv {
	t.Helper()
	m := metrics.New(TypeLabels()...)
	c := NewCache()
	tr := NewTracker("test", c, m, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	gs, err := NewServer(ctx, TLS{}, c, tr, options...)
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		gs.Serve(lis)
	}()
	t.Cleanup(func() {
		cancel()
		gs.Stop()
		<-done
	})
	return &xdsEnv{t: t, cache: c, tracker: tr, metrics: m, addr: lis.Addr().String()}
}

// stream opens an ADS stream.
func (e *xdsEnv) stream() discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	e.t.Helper()
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(e.t, err)
	e.t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	require.NoError(e.t, err)
	return s
}

// recvOne waits for one response, or fails the test.
func recvOne(t *testing.T, s discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient) *discoveryv3.DiscoveryResponse {
	t.Helper()
	type got struct {
		r   *discoveryv3.DiscoveryResponse
		err error
	}
	ch := make(chan got, 1)
	go func() {
		r, err := s.Recv()
		ch <- got{r, err}
	}()
	select {
	case g := <-ch:
		require.NoError(t, g.err)
		return g.r
	case <-time.After(20 * time.Second):
		t.Fatal("no response within 20s")
		return nil
	}
}

// A client that asks for type URLs Bulwark does not serve is refused with
// InvalidArgument, counted, and cannot hold up anyone else: before, each
// unknown type got a watch and an answer, and go-control-plane's ordered-ADS
// channel (ten responses) filled while the publisher held the cache's locks,
// so no proxy got config again.
func TestUnknownTypeURLsAreRefused(t *testing.T) {
	e := newXDSEnv(t)
	snap, _, err := seal.NewSnapshot(meshtest.RenderMesh(t, 2))
	require.NoError(t, err)
	abuser := &corev3.Node{Id: "abuser", Cluster: "svc-00000", UserAgentName: "envoy"}
	group := e.cache.hash.ID(abuser)
	require.NoError(t, e.cache.SetSnapshot(t.Context(), group, snap))

	for c := range 2 {
		s := e.stream()
		for i := range 50 {
			// The first refused request ends the stream; the rest may fail to send.
			if err := s.Send(&discoveryv3.DiscoveryRequest{Node: abuser, VersionInfo: "x", TypeUrl: fmt.Sprintf("type.googleapis.com/garbage.%d.%d", c, i)}); err != nil {
				break
			}
		}
		_, err := s.Recv()
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		require.Contains(t, status.Convert(err).Message(), "is not served")
	}
	require.GreaterOrEqual(t, testutil.ToFloat64(e.metrics.Refused.WithLabelValues(limits.RefusedType)), 2.0)

	// A normal proxy of the same group gets its config, and the next
	// publication reaches it.
	s := e.stream()
	node := &corev3.Node{Id: "envoy-1", Cluster: "svc-00000", UserAgentName: "envoy"}
	require.NoError(t, s.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}))
	first := recvOne(t, s)
	require.Equal(t, snap.GetVersion(resourcev3.ClusterType), first.GetVersionInfo())
	require.NoError(t, s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: first.GetVersionInfo(), ResponseNonce: first.GetNonce()}))
	next, _, err := seal.NewSnapshot(meshtest.RenderMesh(t, 3))
	require.NoError(t, err)
	resume := e.cache.Pause()
	require.NoError(t, e.cache.SetSnapshot(t.Context(), group, next))
	resume()
	require.Equal(t, next.GetVersion(resourcev3.ClusterType), recvOne(t, s).GetVersionInfo())
	require.Equal(t, 0.0, testutil.ToFloat64(e.metrics.Pushes.WithLabelValues("other")), "no answer for an unknown type")
}

// Oversized node fields are refused on the stream's first request.
func TestOversizedNodesAreRefused(t *testing.T) {
	e := newXDSEnv(t)
	long := make([]byte, limits.MaxNodeIDBytes+1)
	for i := range long {
		long[i] = 'a'
	}
	for _, tc := range []struct {
		node   *corev3.Node
		reason string
	}{
		{&corev3.Node{Id: string(long), Cluster: "svc"}, limits.RefusedNodeID},
		{&corev3.Node{Id: "n", Cluster: string(long)}, limits.RefusedCluster},
	} {
		s := e.stream()
		require.NoError(t, s.Send(&discoveryv3.DiscoveryRequest{Node: tc.node, TypeUrl: resourcev3.ClusterType}))
		_, err := s.Recv()
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		require.Equal(t, 1.0, testutil.ToFloat64(e.metrics.Refused.WithLabelValues(tc.reason)))
	}
	require.Empty(t, e.tracker.Proxies(), "refused nodes get no status")
}

// Two streams of a group share an answer; one of them dropping a name must
// not make the other one look as if it had never been sent that name
// (go-control-plane edits the returned-resources map in place): the other
// stream's ACK waits instead of being answered again and again.
func TestUnsubscribeOnOneStreamDoesNotResendToAnother(t *testing.T) {
	e := newXDSEnv(t)
	res := meshtest.RenderMesh(t, 3)
	snap, _, err := seal.NewSnapshot(res)
	require.NoError(t, err)
	na := &corev3.Node{Id: "a", Cluster: "svc-00000", UserAgentName: "envoy"}
	nb := &corev3.Node{Id: "b", Cluster: "svc-00000", UserAgentName: "envoy"}
	require.NoError(t, e.cache.SetSnapshot(t.Context(), e.cache.hash.ID(na), snap))
	x, y := res.Endpoints[0].GetClusterName(), res.Endpoints[1].GetClusterName()

	a, b := e.stream(), e.stream()
	require.NoError(t, a.Send(&discoveryv3.DiscoveryRequest{Node: na, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{x, y}}))
	ra := recvOne(t, a)
	require.NoError(t, b.Send(&discoveryv3.DiscoveryRequest{Node: nb, TypeUrl: resourcev3.EndpointType, ResourceNames: []string{x, y}}))
	rb := recvOne(t, b)
	require.Len(t, rb.GetResources(), 2)

	// a ACKs and drops y; then b ACKs.
	require.NoError(t, a.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{x}, VersionInfo: ra.GetVersionInfo(), ResponseNonce: ra.GetNonce()}))
	require.Eventually(t, func() bool { return e.cache.parkedCount() == 1 }, 20*time.Second, 10*time.Millisecond, "a's ACK waits")
	require.NoError(t, b.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{x, y}, VersionInfo: rb.GetVersionInfo(), ResponseNonce: rb.GetNonce()}))
	got := make(chan error, 1)
	go func() {
		_, err := b.Recv()
		got <- err
	}()
	require.Eventually(t, func() bool {
		select {
		case err := <-got:
			if err != io.EOF {
				t.Errorf("b was answered again after its ACK (err %v)", err)
			}
			return true
		default:
		}
		return e.cache.parkedCount() == 2
	}, 20*time.Second, 10*time.Millisecond, "b's ACK waits too")
}

// A proxy that stops reading cannot pin serialized responses, and its
// stream's goroutine, for ever: gRPC queues one response beyond the
// flow-control window, and the next waits; past the send timeout the
// connection is closed, counted and logged, and its status goes. Other
// proxies are not affected.
func TestAStreamThatDoesNotReadIsClosed(t *testing.T) {
	e := newXDSEnv(t, SendTimeout(300*time.Millisecond))
	snap, _, err := seal.NewSnapshot(meshtest.RenderMesh(t, 3000)) // responses of several times 64 KiB
	require.NoError(t, err)
	node := &corev3.Node{Id: "slow", Cluster: "svc-00000", UserAgentName: "envoy"}
	require.NoError(t, e.cache.SetSnapshot(t.Context(), e.cache.hash.ID(node), snap))

	// A fixed 64 KiB flow-control window (no BDP growth), and no reads.
	cc, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	slow, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	require.NoError(t, err)
	require.NoError(t, slow.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ClusterType}))
	// gRPC queues one response beyond the window; the next one waits.
	require.NoError(t, slow.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType}))

	require.Eventually(t, func() bool {
		return testutil.ToFloat64(e.metrics.Refused.WithLabelValues(limits.RefusedStalled)) == 1
	}, 20*time.Second, 10*time.Millisecond, "the stalled connection is closed")
	require.Eventually(t, func() bool { return len(e.tracker.Proxies()) == 0 }, 20*time.Second, 10*time.Millisecond, "and its proxy is gone")
	for {
		if _, err := slow.Recv(); err != nil {
			require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
			break
		}
	}

	// Another proxy reads, and is served.
	s := e.stream()
	fast := &corev3.Node{Id: "fast", Cluster: "svc-00000", UserAgentName: "envoy"}
	require.NoError(t, s.Send(&discoveryv3.DiscoveryRequest{Node: fast, TypeUrl: resourcev3.ClusterType}))
	require.Len(t, recvOne(t, s).GetResources(), 3000)
}
