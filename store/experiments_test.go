package store

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bulwarkmesh/bulwark/policies"
)

func TestExperimentExpiresAndHistorySaysSo(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	ch := e.st.Watch(ctx, 0)
	require.NotNil(t, next(t, ch).Resync)

	ex := experiment(t, "payments-503", "1s")
	rev, err := e.st.StartExperiment(ctx, ex, "alice")
	require.NoError(t, err)
	require.Equal(t, rev, ex.Metadata.Revision)
	require.NotNil(t, ex.Status)
	require.Equal(t, "alice", ex.Status.StartedBy)
	require.Equal(t, OutcomeRunning, ex.Status.Outcome)
	started, err := time.Parse(time.RFC3339Nano, ex.Status.StartedAt)
	require.NoError(t, err)
	ends, err := time.Parse(time.RFC3339Nano, ex.Status.EndsAt)
	require.NoError(t, err)
	require.Equal(t, time.Second, ends.Sub(started))

	ev := nextChanges(t, ch)
	got := ev.Changes[0].Resource.(*policies.ChaosExperiment)
	require.Equal(t, ex.Status, got.Status)

	// One of that name runs: a second start conflicts.
	_, err = e.st.StartExperiment(ctx, experiment(t, "payments-503", "1m"), "bob")
	require.ErrorIs(t, err, ErrConflict)

	hist, err := e.st.History(ctx)
	require.NoError(t, err)
	require.Len(t, hist, 1)
	require.Equal(t, OutcomeRunning, hist[0].Status.Outcome)

	// The lease ends it; the watch sees the delete and the history says expired.
	ev = nextChanges(t, ch)
	require.Equal(t, "payments-503", ev.Changes[0].Name)
	require.True(t, ev.Changes[0].Deleted())
	hist, err = e.st.History(ctx)
	require.NoError(t, err)
	require.Len(t, hist, 1)
	require.Equal(t, OutcomeExpired, hist[0].Status.Outcome)
	require.Equal(t, ex.Status.EndsAt, hist[0].Status.EndedAt)
	require.Equal(t, "alice", hist[0].Status.StartedBy)

	// It can run again; the history keeps both runs, newest first.
	again := experiment(t, "payments-503", "1m")
	_, err = e.st.StartExperiment(ctx, again, "bob")
	require.NoError(t, err)
	hist, err = e.st.History(ctx)
	require.NoError(t, err)
	require.Len(t, hist, 2)
	require.Equal(t, "bob", hist[0].Status.StartedBy)
	require.Equal(t, OutcomeRunning, hist[0].Status.Outcome)
	require.Equal(t, OutcomeExpired, hist[1].Status.Outcome)

	bad := experiment(t, "bad", "1m")
	bad.Spec.Duration = nil
	_, err = e.st.StartExperiment(ctx, bad, "x")
	require.ErrorContains(t, err, "spec.duration: required")
}

func TestKillSwitch(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	for _, name := range []string{"payments-503", "ledger-delay"} {
		_, err := e.st.StartExperiment(ctx, experiment(t, name, "10m"), "alice")
		require.NoError(t, err)
	}
	// A value written by hand that does not decode is stopped all the same.
	lease, err := e.cli.Grant(ctx, 600)
	require.NoError(t, err)
	_, err = e.cli.Put(ctx, "/bulwark/v1/experiments/handmade", `{"kind":"ChaosExperiment","bogus":1}`, clientv3.WithLease(lease.ID))
	require.NoError(t, err)
	var leases []clientv3.LeaseID
	resp, err := e.cli.Get(ctx, "/bulwark/v1/experiments/", clientv3.WithPrefix())
	require.NoError(t, err)
	for _, kv := range resp.Kvs {
		leases = append(leases, clientv3.LeaseID(kv.Lease))
	}
	require.Len(t, leases, 3)

	stopped, err := e.st.StopExperiments(ctx, "oncall")
	require.NoError(t, err)
	require.Equal(t, []string{"handmade", "ledger-delay", "payments-503"}, stopped)

	resp, err = e.cli.Get(ctx, "/bulwark/v1/experiments/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	require.NoError(t, err)
	require.Zero(t, resp.Count)
	for _, id := range leases {
		ttl, err := e.cli.TimeToLive(ctx, id)
		require.NoError(t, err)
		require.Equal(t, int64(-1), ttl.TTL, "lease %x revoked", int64(id))
	}
	hist, err := e.st.History(ctx)
	require.NoError(t, err)
	require.Len(t, hist, 2)
	for _, h := range hist {
		require.Equal(t, OutcomeStopped, h.Status.Outcome)
		require.Equal(t, "oncall", h.Status.StoppedBy)
		require.NotEmpty(t, h.Status.EndedAt)
	}

	// Nothing left to stop.
	stopped, err = e.st.StopExperiments(ctx, "oncall")
	require.NoError(t, err)
	require.Empty(t, stopped)
	require.ErrorIs(t, e.st.StopExperiment(ctx, "payments-503", "x"), ErrNotFound)
}

func TestPutExperimentReplacesTheRunningOne(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	first := experiment(t, "payments-503", "10m")
	first.Metadata.Source = "dir:/srv/chaos"
	_, err := e.st.Put(ctx, first, 0)
	require.NoError(t, err)
	require.Equal(t, "dir:/srv/chaos", first.Status.StartedBy)

	second := experiment(t, "payments-503", "5m")
	_, err = e.st.Put(ctx, second, first.Metadata.Revision)
	require.NoError(t, err)
	got, err := e.st.Get(ctx, policies.KindExperiment, "payments-503")
	require.NoError(t, err)
	require.Equal(t, second.Status, got.(*policies.ChaosExperiment).Status)

	hist, err := e.st.History(ctx)
	require.NoError(t, err)
	require.Len(t, hist, 2)
	require.Equal(t, OutcomeRunning, hist[0].Status.Outcome)
	require.Equal(t, "5m0s", hist[0].Spec.Duration.D().String())
	require.Equal(t, OutcomeStopped, hist[1].Status.Outcome)

	// A stale revision conflicts and starts nothing.
	_, err = e.st.Put(ctx, experiment(t, "payments-503", "1m"), first.Metadata.Revision)
	require.ErrorIs(t, err, ErrConflict)
	leases, err := e.cli.Leases(ctx)
	require.NoError(t, err)
	require.Len(t, leases.Leases, 1, "only the running experiment holds a lease")

	// Deleting it stops it.
	_, err = e.st.Delete(ctx, policies.KindExperiment, "payments-503", 0)
	require.NoError(t, err)
	hist, err = e.st.History(ctx)
	require.NoError(t, err)
	require.Equal(t, OutcomeStopped, hist[0].Status.Outcome)
	leases, err = e.cli.Leases(ctx)
	require.NoError(t, err)
	require.Empty(t, leases.Leases)
}

// etcd renews leases to their full TTL when a leader is elected, so an
// experiment's lease can outlive its endsAt; a watching store ends it on time.
func TestWatchEndsExperimentsAtEndsAtDespiteARenewedLease(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	ex := experiment(t, "payments-503", "10m")
	_, err := e.st.StartExperiment(ctx, ex, "alice")
	require.NoError(t, err)

	// As if the lease had been renewed while the end drew near: endsAt in
	// one second, lease good for ten minutes.
	ends := time.Now().Add(time.Second)
	ex.Status.EndsAt = ends.UTC().Format(time.RFC3339Nano)
	val, err := encodeResource(ex)
	require.NoError(t, err)
	_, err = e.cli.Put(ctx, "/bulwark/v1/experiments/payments-503", string(val), clientv3.WithIgnoreLease())
	require.NoError(t, err)

	ch := e.st.Watch(ctx, 0)
	require.Contains(t, next(t, ch).Resync.Experiments, "payments-503")
	ev := nextChanges(t, ch)
	require.True(t, ev.Changes[0].Deleted())
	require.False(t, time.Now().Before(ends), "not before its end")
	// The lease is good for ten minutes: a deletion within the wait of
	// nextChanges can only be the reaper's, at endsAt.

	hist, err := e.st.History(ctx)
	require.NoError(t, err)
	require.Len(t, hist, 1)
	require.Equal(t, OutcomeExpired, hist[0].Status.Outcome)
	require.Equal(t, ex.Status.EndsAt, hist[0].Status.EndedAt)
	require.Eventually(t, func() bool {
		leases, err := e.cli.Leases(ctx)
		return err == nil && len(leases.Leases) == 0
	}, 5*time.Second, 20*time.Millisecond, "its lease is revoked")
}

// With no watch running, the lease alone ends an experiment.
func TestExperimentLeaseEndsIt(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	_, err := e.st.StartExperiment(ctx, experiment(t, "lease-only", "1s"), "alice")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := e.st.Get(ctx, policies.KindExperiment, "lease-only")
		return errors.Is(err, ErrNotFound)
	}, 6*time.Second, 50*time.Millisecond)
	hist, err := e.st.History(ctx)
	require.NoError(t, err)
	require.Equal(t, OutcomeExpired, hist[0].Status.Outcome)
}
