package fleet

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/storetest"
	"github.com/bulwarkmesh/bulwark/xds/ir"
)

func newStore(t *testing.T) *store.Store {
	t.Helper()
	srv := storetest.NewServer(t)
	st := store.New(storetest.NewClient(t, srv), store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return st
}

// connect makes a proxy of service known to tr, as its first request does.
func connect(t *testing.T, tr *xdsserver.Tracker, stream int64, id, service string) {
	t.Helper()
	require.NoError(t, tr.OnStreamRequest(stream, &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: id, Cluster: service}, TypeUrl: resourcev3.ClusterType}))
}

func statusJSON(t *testing.T, p api.ProxyStatus) []byte {
	t.Helper()
	b, err := json.Marshal(p)
	require.NoError(t, err)
	return b
}

// Proxies is this replica's proxies from memory and the other replicas'
// from the store, sorted by ID; this replica's stored status (older than
// its memory) and values that do not decode are left out.
func TestViewMergesThisReplicaWithTheOthers(t *testing.T) {
	st := newStore(t)
	ctx := t.Context()
	tr := xdsserver.NewTracker("here", xdsserver.NewCache(), metrics.New())
	connect(t, tr, 1, "checkout-2", "checkout")
	connect(t, tr, 2, "ledger-1", "ledger")

	other := api.ProxyStatus{
		ID: "checkout-1", Service: "checkout", Flavor: ir.FlavorEnvoy, Group: "envoy/checkout", Replica: "other",
		Protocol: "delta", Converged: true, Revision: 42,
		Types: map[string]*api.TypeStatus{"routes": {Sent: "v1", Acked: "v1", AckedRevision: 42}},
	}
	require.NoError(t, st.PutStatuses(ctx, "other", map[string][]byte{
		"checkout-1": statusJSON(t, other),
		"broken":     []byte("{not json"),
	}))
	// What this replica stored before: its memory is what counts.
	require.NoError(t, st.PutStatuses(ctx, "here", map[string][]byte{
		"stale-1": statusJSON(t, api.ProxyStatus{ID: "stale-1", Replica: "here"}),
	}))

	v := NewView("here", tr, st)
	got := v.Proxies(ctx)
	ids := make([]string, len(got))
	for i, p := range got {
		ids[i] = p.ID
	}
	require.Equal(t, []string{"checkout-1", "checkout-2", "ledger-1"}, ids)
	require.Equal(t, "other", got[0].Replica)
	require.True(t, got[0].Converged)
	require.Equal(t, int64(42), got[0].Revision)
	require.Equal(t, "v1", got[0].Types["routes"].Acked)
	require.Equal(t, "here", got[1].Replica)
	require.Equal(t, "envoy/checkout", got[1].Group)

	p, ok := v.Local("ledger-1")
	require.True(t, ok)
	require.Equal(t, "ledger", p.Service)
	_, ok = v.Local("checkout-1")
	require.False(t, ok, "another replica's proxy is not local")

	// A proxy that leaves this replica leaves the view at once.
	tr.OnStreamClosed(2, nil)
	got = v.Proxies(ctx)
	require.Len(t, got, 2)
	require.Equal(t, "checkout-1", got[0].ID)
	require.Equal(t, "checkout-2", got[1].ID)
}

// The rollout counts each proxy once: converged, rejecting (its last
// response of some type was a NACK of what it was sent) or pending.
func TestRolloutOf(t *testing.T) {
	converged := api.ProxyStatus{ID: "a", Converged: true}
	rejecting := api.ProxyStatus{ID: "b", Types: map[string]*api.TypeStatus{
		"routes":   {Sent: "v2", Acked: "v1", LastNack: &api.Nack{Version: "v2", Error: "bad route"}},
		"clusters": {Sent: "c1", Acked: "c1"},
	}}
	// It rejected an older version and was sent a newer one since.
	pending := api.ProxyStatus{ID: "c", Types: map[string]*api.TypeStatus{
		"routes": {Sent: "v3", Acked: "v1", LastNack: &api.Nack{Version: "v2"}},
	}}
	fresh := api.ProxyStatus{ID: "d"}
	for _, tc := range []struct {
		name string
		ps   []api.ProxyStatus
		want api.Rollout
	}{
		{"none", nil, api.Rollout{}},
		{"converged", []api.ProxyStatus{converged}, api.Rollout{Total: 1, Converged: 1}},
		{"rejecting", []api.ProxyStatus{rejecting}, api.Rollout{Total: 1, Rejecting: 1}},
		{"nack of an older version", []api.ProxyStatus{pending}, api.Rollout{Total: 1, Pending: 1}},
		{"nothing acked yet", []api.ProxyStatus{fresh}, api.Rollout{Total: 1, Pending: 1}},
		{"mixed", []api.ProxyStatus{converged, rejecting, pending, fresh, converged}, api.Rollout{Total: 5, Converged: 2, Rejecting: 1, Pending: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, RolloutOf(tc.ps))
		})
	}
}

// Run persists this replica's proxies, as the tracker marks them, until
// its context ends; another replica's view then sees them.
func TestWriterRunPersistsProxies(t *testing.T) {
	st := newStore(t)
	tr := xdsserver.NewTracker("here", xdsserver.NewCache(), metrics.New())
	w := NewWriter(st, "here", tr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	tr.OnDirty = w.Mark
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, 20*time.Millisecond)
	}()
	defer func() {
		cancel()
		<-done
	}()

	connect(t, tr, 1, "checkout-1", "checkout")
	elsewhere := NewView("other", xdsserver.NewTracker("other", xdsserver.NewCache(), metrics.New()), st)
	require.Eventually(t, func() bool {
		ps := elsewhere.Proxies(t.Context())
		return len(ps) == 1 && ps[0].ID == "checkout-1" && ps[0].Replica == "here"
	}, 10*time.Second, 20*time.Millisecond, "the proxy never reached the store")
}
