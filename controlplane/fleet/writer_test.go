package fleet

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/status"

	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

func newWriter(t *testing.T) (*Writer, *xdsserver.Tracker, *store.Store) {
	t.Helper()
	srv := storetest.NewServer(t)
	st := store.New(storetest.NewClient(t, srv), store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { st.Close() })
	tr := xdsserver.NewTracker("r", xdsserver.NewCache(), metrics.New())
	w := NewWriter(st, "r", tr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	tr.OnDirty = w.Mark
	tr.OnReject = w.MarkRejected
	return w, tr, st
}

// TestStatusWritesAreBounded: a flush writes at most its share of
// statusWritesPerSecond; the rest waits for the next flushes, none lost.
func TestStatusWritesAreBounded(t *testing.T) {
	w, tr, st := newWriter(t)
	w.limit = 10
	ctx := t.Context()
	for i := range 25 {
		require.NoError(t, tr.OnStreamRequest(int64(i), &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: fmt.Sprintf("node-%02d", i), Cluster: "svc"}, TypeUrl: resourcev3.ClusterType}))
	}
	require.Len(t, w.dirty, 25, "a new proxy is marked for persistence")
	for _, left := range []int{15, 5, 0} {
		w.flush(ctx)
		w.mu.Lock()
		require.Len(t, w.dirty, left)
		w.mu.Unlock()
	}
	all, err := st.ListStatus(ctx)
	require.NoError(t, err)
	require.Len(t, all["r"], 25)
}

// respond sends a proxy a response of a type on a stream, as the server does.
func respond(t *testing.T, tr *xdsserver.Tracker, stream int64, node, version, nonce string) {
	t.Helper()
	tr.OnStreamResponse(context.Background(), stream,
		&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node, Cluster: "svc"}, TypeUrl: resourcev3.ClusterType},
		&discoveryv3.DiscoveryResponse{VersionInfo: version, Nonce: nonce, TypeUrl: resourcev3.ClusterType})
}

// answer is the proxy's ACK (detail "") or NACK of a response.
func answer(t *testing.T, tr *xdsserver.Tracker, stream int64, node, version, nonce, detail string) {
	t.Helper()
	req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: node, Cluster: "svc"}, TypeUrl: resourcev3.ClusterType, VersionInfo: version, ResponseNonce: nonce}
	if detail != "" {
		req.ErrorDetail = &status.Status{Message: detail}
	}
	require.NoError(t, tr.OnStreamRequest(stream, req))
}

// Defect 1 of issue 10: a change of a proxy's state (an ACK of a new
// version, a NACK) is written at the next flush, however recently the
// proxy was written; a repeat of the same state (a re-ACK, which only moves
// a timestamp) waits for statusRewriteEvery.
func TestStateChangesAreWrittenAtOnce(t *testing.T) {
	w, tr, st := newWriter(t)
	ctx := t.Context()
	stored := func() string {
		all, err := st.ListStatus(ctx)
		require.NoError(t, err)
		return string(all["r"]["node-1"])
	}
	require.NoError(t, tr.OnStreamRequest(1, &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "node-1", Cluster: "svc"}, TypeUrl: resourcev3.ClusterType}))
	w.flush(ctx)
	require.NotEmpty(t, stored(), "the first write is not held back")

	respond(t, tr, 1, "node-1", "v1", "n1")
	answer(t, tr, 1, "node-1", "v1", "n1", "")
	w.flush(ctx)
	require.Contains(t, stored(), `"acked":"v1"`, "an ACK of a new version is written at once")

	respond(t, tr, 1, "node-1", "v2", "n2")
	answer(t, tr, 1, "node-1", "v1", "n2", "bad cluster")
	w.flush(ctx)
	require.Contains(t, stored(), `bad cluster`, "a NACK is written at once")

	// The same state again (a re-ACK only moves ackedAt): held.
	before := stored()
	w.Mark("node-1")
	w.flush(ctx)
	require.Equal(t, before, stored())
	w.mu.Lock()
	_, held := w.held["node-1"]
	w.mu.Unlock()
	require.True(t, held, "an unchanged state waits for statusRewriteEvery")
	w.mu.Lock()
	w.held["node-1"] = time.Now().Add(-time.Second)
	w.written["node-1"] = writtenState{at: time.Now().Add(-2 * statusRewriteEvery), state: w.written["node-1"].state}
	w.mu.Unlock()
	w.flush(ctx)
	require.Empty(t, w.held, "written again once due")

	// A disconnect is written at once too.
	tr.OnStreamClosed(1, nil)
	w.flush(ctx)
	require.Empty(t, stored())
}

// A rejection recorded by this replica's guard is shared through the
// store, with the proxy's error; another replica's tracker adopts it.
func TestRejectionsAreShared(t *testing.T) {
	w, tr, st := newWriter(t)
	ctx := t.Context()
	require.NoError(t, tr.OnStreamRequest(1, &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "node-1", Cluster: "svc"}, TypeUrl: resourcev3.ClusterType}))
	respond(t, tr, 1, "node-1", "v2", "n2")
	answer(t, tr, 1, "node-1", "", "n2", "bad cluster")
	w.flushRejections(ctx)

	other := xdsserver.NewTracker("other", xdsserver.NewCache(), metrics.New())
	v := NewView("other", other, st, nil)
	runView(t, v)
	// The node moves to the other replica: it is reported rejecting there.
	require.NoError(t, other.OnStreamRequest(7, &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "node-1", Cluster: "svc"}, TypeUrl: resourcev3.ClusterType, VersionInfo: "v1"}))
	require.Eventually(t, func() bool {
		p, ok := other.Proxy("node-1")
		return ok && p.Rejecting() && p.Types["clusters"].LastNack.Error == "bad cluster"
	}, 10*time.Second, 10*time.Millisecond)
	rj, ok := other.Rejection("node-1", resourcev3.ClusterType)
	require.True(t, ok)
	require.Equal(t, "v2", rj.Version)
}
