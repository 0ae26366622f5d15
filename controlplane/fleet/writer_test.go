package fleet

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

// TestStatusWritesAreBounded: a flush writes at most its share of
// statusWritesPerSecond; the rest waits for the next flushes, none lost.
func TestStatusWritesAreBounded(t *testing.T) {
	srv := storetest.NewServer(t)
	st := store.New(storetest.NewClient(t, srv), store.Options{})
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tr := xdsserver.NewTracker("r", xdsserver.NewCache(), metrics.New())
	w := &Writer{store: st, replica: "r", tracker: tr, log: log, dirty: map[string]bool{}, limit: 10}
	tr.OnDirty = w.Mark
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

// TestStatusRewritesAreSpaced: a proxy written recently is not written
// again before the interval has passed; it stays marked until then.
func TestStatusRewritesAreSpaced(t *testing.T) {
	srv := storetest.NewServer(t)
	st := store.New(storetest.NewClient(t, srv), store.Options{})
	t.Cleanup(func() { st.Close() })
	tr := xdsserver.NewTracker("r", xdsserver.NewCache(), metrics.New())
	w := &Writer{store: st, replica: "r", tracker: tr, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		dirty: map[string]bool{}, every: time.Hour}
	tr.OnDirty = w.Mark
	require.NoError(t, tr.OnStreamRequest(1, &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "node-1", Cluster: "svc"}, TypeUrl: resourcev3.ClusterType}))
	w.flush(t.Context())
	require.Empty(t, w.dirty, "the first write is not held back")
	w.Mark("node-1")
	w.flush(t.Context())
	require.True(t, w.dirty["node-1"], "written an instant ago: held")
	w.mu.Lock()
	w.written["node-1"] = time.Now().Add(-2 * time.Hour)
	w.mu.Unlock()
	w.flush(t.Context())
	require.Empty(t, w.dirty)
}
