package snapshot_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/controlplane/snapshot"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

// replicaBuilder runs a loader and a builder of its own over its own store
// on srv, as another replica does, until the test ends.
func replicaBuilder(t *testing.T, st *store.Store) *snapshot.Builder {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := metrics.New(xdsserver.TypeLabels()...)
	cache := xdsserver.NewCache()
	b := snapshot.NewBuilder(log, cache, xdsserver.NewTracker("r", cache, m), m)
	l := snapshot.NewLoader(snapshot.LoaderConfig{
		Log: log, Store: st, Builder: b, Validate: policies.ValidateOptions{},
		Debounce: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, b.Built, waitFor, 10*time.Millisecond, "no first build")
	return b
}

// Defect 6 of issue 10: the revision of a build is the revision of its
// content, the same on every replica, however far proxy status writes moved
// the store's revision since, and whether the replica saw the last change
// (here a deletion, which leaves no key behind) live or started after it.
func TestRevisionIsTheContentsOnEveryReplica(t *testing.T) {
	srv := storetest.NewServer(t)
	newStore := func() *store.Store {
		st := store.New(storetest.NewClient(t, srv), store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxTxnOps: srv.MaxTxnOps()})
		t.Cleanup(func() { require.NoError(t, st.Close()) })
		return st
	}
	st := newStore()
	ctx := t.Context()
	statuses := func() {
		for i := range 5 {
			require.NoError(t, st.PutStatuses(ctx, "a", map[string][]byte{fmt.Sprintf("node-%d", i): []byte(`{}`)}))
		}
	}
	for _, doc := range []string{paymentsService, ledgerService} {
		r, err := policies.DecodeOne([]byte(doc))
		require.NoError(t, err)
		_, err = st.Put(ctx, r, 0)
		require.NoError(t, err)
	}
	early := replicaBuilder(t, newStore())
	statuses()
	deleted, err := st.Delete(ctx, policies.KindService, "payments", 0)
	require.NoError(t, err)
	statuses()
	require.Eventually(t, func() bool { return early.Revision() == deleted }, waitFor, 10*time.Millisecond,
		"the replica that watched the deletion builds at its revision")

	late := replicaBuilder(t, newStore())
	require.Eventually(t, func() bool { return late.Revision() == deleted }, waitFor, 10*time.Millisecond,
		"a replica started after the status writes: revision %d, want the content's %d", late.Revision(), deleted)
	_, storeRev, _, err := st.Load(ctx)
	require.NoError(t, err)
	require.Greater(t, storeRev, deleted, "the status writes moved the store's revision")
}
