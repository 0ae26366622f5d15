package store

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
)

// A guarded write fails with a *StaleError, writing nothing, when a guard
// it names or a key it changes moved after the revision its checks read;
// the error says how far to read again. Bundles compare everything and
// touch the bundle guard, which single writes compare.
func TestApplyGuarded(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	read, err := e.st.Revision(ctx)
	require.NoError(t, err)

	// Two writes guarded by the same name, both checked at read: the second loses.
	first, err := e.st.ApplyGuarded(ctx, []Op{{Put: policy(t, "a", "payments")}}, "", Guard{Read: read, Names: []string{"service/payments"}})
	require.NoError(t, err)
	_, err = e.st.ApplyGuarded(ctx, []Op{{Put: policy(t, "b", "payments")}}, "", Guard{Read: read, Names: []string{"service/payments"}})
	var se *StaleError
	require.ErrorAs(t, err, &se)
	require.ErrorIs(t, err, ErrStale)
	require.Equal(t, first, se.Revision, "read again up to the winner")
	_, err = e.st.Get(ctx, policies.KindPolicy, "b")
	require.ErrorIs(t, err, ErrNotFound)
	// Another guard, read at the same revision: no overlap, it commits.
	_, err = e.st.ApplyGuarded(ctx, []Op{{Put: policy(t, "c", "ledger")}}, "", Guard{Read: read, Names: []string{"service/ledger"}})
	require.NoError(t, err)
	// A key that changed after the read: stale too.
	_, err = e.st.ApplyGuarded(ctx, []Op{{Put: policy(t, "a", "payments")}}, "", Guard{Read: read, Names: []string{"service/other"}})
	require.ErrorAs(t, err, &se)
	// The client's own revision still decides first: a conflict, not stale.
	_, err = e.st.ApplyGuarded(ctx, []Op{{Put: policy(t, "a", "payments"), ExpectRev: read}}, "", Guard{Read: first})
	var ce *ConflictError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, first, ce.Actual)

	// A bundle checked before single writes committed: stale.
	cur, err := e.st.Revision(ctx)
	require.NoError(t, err)
	_, err = e.st.ApplyGuarded(ctx, []Op{{Put: service(t, "payments", 9001)}}, "", Guard{Read: read, Bundle: true})
	require.ErrorAs(t, err, &se)
	require.Equal(t, cur, se.Revision)
	bundle, err := e.st.ApplyGuarded(ctx, []Op{{Put: service(t, "payments", 9001)}}, "", Guard{Read: cur, Bundle: true})
	require.NoError(t, err)
	// A single write checked before the bundle: stale on the bundle guard.
	_, err = e.st.ApplyGuarded(ctx, []Op{{Put: policy(t, "d", "inventory")}}, "", Guard{Read: cur, Names: []string{"service/inventory"}})
	require.ErrorAs(t, err, &se)
	require.Equal(t, bundle, se.Revision)
	// Deletions move the guards too.
	_, err = e.st.ApplyGuarded(ctx, []Op{{DeleteKind: policies.KindPolicy, DeleteName: "c"}}, "", Guard{Read: bundle, Names: []string{"service/ledger"}})
	require.NoError(t, err)
	_, err = e.st.ApplyGuarded(ctx, []Op{{Put: policy(t, "e", "ledger")}}, "", Guard{Read: bundle, Names: []string{"service/ledger"}})
	require.ErrorAs(t, err, &se)
}

// A guarded write that changes no resource (it deletes what is already
// gone) still reaches watchers as an event of its revision, so a consumer
// waiting to have seen it does not wait for the next unrelated write.
func TestGuardOnlyWriteIsWatched(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	rev, err := e.st.Revision(ctx)
	require.NoError(t, err)
	events := e.st.Watch(ctx, rev)
	wrote, err := e.st.ApplyGuarded(ctx, []Op{{DeleteKind: policies.KindPolicy, DeleteName: "gone"}}, "", Guard{Read: rev, Names: []string{"service/payments"}})
	require.NoError(t, err)
	select {
	case ev := <-events:
		require.Equal(t, wrote, ev.Revision)
		require.Empty(t, ev.Changes)
	case <-ctx.Done():
		t.Fatal("no event for the guard-only write")
	}
}
