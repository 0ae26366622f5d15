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
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

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

// runView follows the store until the test ends.
func runView(t *testing.T, v *View) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func ids(ps []api.ProxyStatus) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.ID + "@" + p.Replica
	}
	return out
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

	v := NewView("here", tr, st, nil)
	runView(t, v)
	require.Eventually(t, func() bool { return len(v.Proxies(ctx)) == 3 }, 10*time.Second, 10*time.Millisecond)
	got := v.Proxies(ctx)
	require.Equal(t, []string{"checkout-1@other", "checkout-2@here", "ledger-1@here"}, ids(got))
	require.True(t, got[0].Converged)
	require.Equal(t, int64(42), got[0].Revision)
	require.Equal(t, "v1", got[0].Types["routes"].Acked)
	require.Equal(t, "envoy/checkout", got[1].Group)
	partial, _ := v.Partial()
	require.False(t, partial)

	p, ok := v.Local("ledger-1")
	require.True(t, ok)
	require.Equal(t, "ledger", p.Service)
	_, ok = v.Local("checkout-1")
	require.False(t, ok, "another replica's proxy is not local")

	// A proxy that leaves this replica leaves the view at once.
	tr.OnStreamClosed(2, nil)
	require.Equal(t, []string{"checkout-1@other", "checkout-2@here"}, ids(v.Proxies(ctx)))

	// Another replica's change reaches the view through the watch.
	require.NoError(t, st.DeleteStatus(ctx, "other", "checkout-1"))
	require.Eventually(t, func() bool { return len(v.Proxies(ctx)) == 1 }, 10*time.Second, 10*time.Millisecond)
}

// Defect 2 of issue 10: a proxy listed by several replicas (one of them
// died: its status stays until its lease expires) is counted once, where it
// connected last.
func TestViewCountsEachNodeOnceNewestWins(t *testing.T) {
	st := newStore(t)
	ctx := t.Context()
	tr := xdsserver.NewTracker("here", xdsserver.NewCache(), metrics.New())
	connect(t, tr, 1, "checkout-1", "checkout")
	local, ok := tr.Proxy("checkout-1")
	require.True(t, ok)
	at := func(d time.Duration, replica, id string) []byte {
		return statusJSON(t, api.ProxyStatus{ID: id, Service: "checkout", Replica: replica, ConnectedAt: local.ConnectedAt.Add(d), Converged: true})
	}
	require.NoError(t, st.PutStatuses(ctx, "dead", map[string][]byte{"checkout-1": at(-time.Minute, "dead", "checkout-1"), "checkout-2": at(-time.Minute, "dead", "checkout-2")}))
	require.NoError(t, st.PutStatuses(ctx, "alive", map[string][]byte{"checkout-2": at(-time.Second, "alive", "checkout-2")}))

	v := NewView("here", tr, st, nil)
	runView(t, v)
	require.Eventually(t, func() bool { partial, _ := v.Partial(); return !partial }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"checkout-1@here", "checkout-2@alive"}, ids(v.Proxies(ctx)))
	require.Equal(t, api.Rollout{Total: 2, Converged: 1, Pending: 1}, RolloutOf(v.Proxies(ctx)))
}

// Defect 3 of issue 10: with the store unreachable the view says it is
// partial, and why; this replica's proxies are still listed.
func TestViewIsPartialWithoutTheStore(t *testing.T) {
	srv := storetest.NewServer(t)
	fw := newForwarder(t, srv.Config().ListenClient)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{fw.addr()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() })
	st := store.New(cli, store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { _ = st.Close() })
	tr := xdsserver.NewTracker("here", xdsserver.NewCache(), metrics.New())
	connect(t, tr, 1, "checkout-1", "checkout")
	storeUp := func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := st.Ping(ctx); err != nil {
			return false, err.Error()
		}
		return true, ""
	}
	v := NewView("here", tr, st, storeUp)
	runView(t, v)
	require.Eventually(t, func() bool { partial, _ := v.Partial(); return !partial }, 10*time.Second, 10*time.Millisecond)

	fw.Cut()
	partial, why := v.Partial()
	require.True(t, partial)
	require.Contains(t, why, "store is unreachable")
	require.Equal(t, []string{"checkout-1@here"}, ids(v.Proxies(t.Context())))
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
		w.Run(ctx, FlushEvery)
	}()
	defer func() {
		cancel()
		<-done
	}()

	connect(t, tr, 1, "checkout-1", "checkout")
	elsewhere := NewView("other", xdsserver.NewTracker("other", xdsserver.NewCache(), metrics.New()), st, nil)
	runView(t, elsewhere)
	require.Eventually(t, func() bool {
		ps := elsewhere.Proxies(t.Context())
		return len(ps) == 1 && ps[0].ID == "checkout-1" && ps[0].Replica == "here"
	}, 10*time.Second, 20*time.Millisecond, "the proxy never reached the store")
	tr.OnStreamClosed(1, nil)
	require.Eventually(t, func() bool { return len(elsewhere.Proxies(t.Context())) == 0 }, 10*time.Second, 20*time.Millisecond, "its departure never reached the store")
}
