package store

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
)

func TestWatchResumesFromRevision(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)

	rev1, err := e.st.Put(ctx, service(t, "ledger", 9001), 0)
	require.NoError(t, err)
	_, err = e.st.Put(ctx, service(t, "payments", 9002), 0)
	require.NoError(t, err)

	wctx, cancel := context.WithCancel(ctx)
	ch := e.st.Watch(wctx, rev1)

	// Only what happened after rev1.
	ev := nextChanges(t, ch)
	require.Nil(t, ev.Resync)
	require.Len(t, ev.Changes, 1)
	c := ev.Changes[0]
	require.Equal(t, policies.KindService, c.Kind)
	require.Equal(t, "payments", c.Name)
	require.Equal(t, ev.Revision, c.Resource.GetMeta().Revision)
	require.False(t, c.Deleted())

	// Status and history writes are not resource changes and are not sent.
	require.NoError(t, e.st.PutStatus(ctx, "replica-1", "node-1", []byte(`{}`)))

	// An apply arrives as one event at one revision.
	rev, err := e.st.Apply(ctx, []Op{
		{Put: policy(t, "payments", "payments")},
		{DeleteKind: policies.KindService, DeleteName: "ledger"},
	})
	require.NoError(t, err)
	ev = nextChanges(t, ch)
	require.Equal(t, rev, ev.Revision)
	require.Len(t, ev.Changes, 2)
	require.Equal(t, policies.KindPolicy, ev.Changes[0].Kind)
	require.Equal(t, "ledger", ev.Changes[1].Name)
	require.True(t, ev.Changes[1].Deleted())

	// A new watch resuming from the revision seen gets nothing old.
	ch2 := e.st.Watch(wctx, rev)
	_, err = e.st.RegisterEndpoint(ctx, "payments", "pod-1", policies.Endpoint{Address: "10.0.0.7", Port: 8080}, time.Minute)
	require.NoError(t, err)
	for _, w := range []<-chan Event{ch, ch2} {
		ev = nextChanges(t, w)
		require.Len(t, ev.Changes, 1)
		c := ev.Changes[0]
		require.Equal(t, KindEndpoint, c.Kind)
		require.Equal(t, "payments/pod-1", c.Name)
		require.Equal(t, "payments", c.Service)
		require.Equal(t, "pod-1", c.Instance)
		require.Equal(t, policies.Endpoint{Address: "10.0.0.7", Port: 8080, Instance: "pod-1"}, *c.Endpoint)
	}

	// The channel closes when the context ends.
	cancel()
	for _, w := range []<-chan Event{ch, ch2} {
		require.Eventually(t, func() bool {
			select {
			case _, ok := <-w:
				return !ok
			default:
				return false
			}
		}, 5*time.Second, 10*time.Millisecond)
	}
}

func TestWatchFromZeroStartsWithResync(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	_, err := e.st.Put(ctx, service(t, "payments", 9002), 0)
	require.NoError(t, err)
	ch := e.st.Watch(ctx, 0)
	ev := next(t, ch)
	require.NotNil(t, ev.Resync)
	require.Equal(t, []string{"payments"}, ev.Resync.ServiceNames())
	rev, err := e.st.Put(ctx, service(t, "ledger", 9001), 0)
	require.NoError(t, err)
	ev = nextChanges(t, ch)
	require.Equal(t, rev, ev.Revision)
	require.Equal(t, "ledger", ev.Changes[0].Name)
}

func TestWatchResyncsAfterCompaction(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	old, err := e.st.Put(ctx, service(t, "ledger", 9001), 0)
	require.NoError(t, err)
	_, err = e.st.Put(ctx, service(t, "payments", 9002), 0)
	require.NoError(t, err)
	_, err = e.st.Put(ctx, policy(t, "mesh-default", "*"), 0)
	require.NoError(t, err)
	newest, err := e.st.RegisterEndpoint(ctx, "payments", "pod-1", policies.Endpoint{Address: "10.0.0.7", Port: 8080}, time.Minute)
	require.NoError(t, err)
	_, err = e.st.Delete(ctx, policies.KindService, "ledger", 0)
	require.NoError(t, err)
	cur, err := e.cli.Get(ctx, "x")
	require.NoError(t, err)
	_, err = e.cli.Compact(ctx, cur.Header.Revision)
	require.NoError(t, err)

	ch := e.st.Watch(ctx, old)
	ev := next(t, ch)
	require.NotNil(t, ev.Resync, "watching a compacted revision re-lists")
	// The re-list's revision is its content's: the newest key's.
	require.Equal(t, newest, ev.Revision)
	require.Equal(t, []string{"payments"}, ev.Resync.ServiceNames())
	require.Contains(t, ev.Resync.Policies, "mesh-default")
	require.Equal(t, "10.0.0.7", ev.Resync.Registered["payments"]["pod-1"].Address)

	// It goes on from there: the deletion kept by the compaction comes
	// again, and raises the content revision to the store's.
	ev = nextChanges(t, ch)
	require.Equal(t, cur.Header.Revision, ev.Revision)
	require.Equal(t, "ledger", ev.Changes[0].Name)
	require.True(t, ev.Changes[0].Deleted())
	rev, err := e.st.Put(ctx, service(t, "fraud", 9003), 0)
	require.NoError(t, err)
	ev = nextChanges(t, ch)
	require.Nil(t, ev.Resync)
	require.Equal(t, rev, ev.Revision)
	require.Equal(t, "fraud", ev.Changes[0].Name)
}

func TestWatchReportsBadValuesAndSkipsThem(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	ch := e.st.Watch(ctx, 0)
	require.NotNil(t, next(t, ch).Resync)

	_, err := e.cli.Put(ctx, "/bulwark/v1/policies/broken", `{"apiVersion":"bulwark/v1","kind":"ResiliencePolicy","metadata":{"name":"broken"},"spec":{"target":{"service":"x"},"retries":{"attempts":"two"}}}`)
	require.NoError(t, err)
	ev := next(t, ch)
	require.Empty(t, ev.Changes)
	require.Len(t, ev.Problems, 1)
	var ve *ValueError
	require.ErrorAs(t, ev.Problems[0], &ve)
	require.Equal(t, "/bulwark/v1/policies/broken", ve.Key)
	require.ErrorContains(t, ve, "spec.retries.attempts")

	// A good value after it is delivered as usual.
	_, err = e.st.Put(ctx, policy(t, "fine", "x"), 0)
	require.NoError(t, err)
	ev = next(t, ch)
	require.Empty(t, ev.Problems)
	require.Equal(t, "fine", ev.Changes[0].Name)
}

// A watch response may carry a content change and a history record written
// after it (the write history records every write at the next revision):
// the event's revision is the content's, the same on every replica, not the
// record's. A watch from an earlier revision gets the backlog in one response.
func TestWatchRevisionIsTheContents(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)

	rev0, err := e.st.Put(ctx, service(t, "ledger", 9001), 0)
	require.NoError(t, err)
	rev, err := e.st.Put(ctx, service(t, "payments", 9002), 0)
	require.NoError(t, err)
	resp, err := e.cli.Put(ctx, e.st.dir(dirWrites)+"00000000000000000099", `{}`)
	require.NoError(t, err)
	require.Greater(t, resp.Header.Revision, rev)

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ev := nextChanges(t, e.st.Watch(wctx, rev0))
	require.Len(t, ev.Changes, 1)
	require.Equal(t, "payments", ev.Changes[0].Name)
	require.Equal(t, rev, ev.Revision, "the history record must not raise the content revision")
}
