package store

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
)

// A run's steady-state record shows in Get while it runs and in History
// after it ended, and writing it triggers no watch event.
func TestSteadyStateRecordFollowsTheRun(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	ch := e.st.Watch(ctx, 0)
	require.NotNil(t, next(t, ch).Resync)

	ex := experiment(t, "payments-503", "1m")
	_, err := e.st.StartExperiment(ctx, ex, "alice")
	require.NoError(t, err)
	nextChanges(t, ch)

	v := 0.5
	rec := &policies.SteadyStateStatus{Phase: policies.PhaseRunning, Evaluations: 3,
		Checks: []policies.CheckSummary{{Name: "errors", Bound: "below 0.1", Last: &policies.Reading{Check: "errors", Time: ex.Status.StartedAt, Value: &v}}}}
	require.NoError(t, e.st.PutSteadyState(ctx, "payments-503", ex.Status.StartedAt, rec))
	got, err := e.st.Get(ctx, policies.KindExperiment, "payments-503")
	require.NoError(t, err)
	require.Equal(t, *rec, got.(*policies.ChaosExperiment).Status.SteadyStateStatus)
	require.Equal(t, "alice", got.(*policies.ChaosExperiment).Status.StartedBy)

	rec.Phase, rec.Verdict = policies.PhaseAborted, policies.VerdictAborted
	require.NoError(t, e.st.PutSteadyState(ctx, "payments-503", ex.Status.StartedAt, rec))
	require.NoError(t, e.st.StopExperiment(ctx, "payments-503", "steady-state"))
	ev := nextChanges(t, ch)
	require.Len(t, ev.Changes, 1, "the steady-state record is not a resource change")

	hist, err := e.st.History(ctx)
	require.NoError(t, err)
	require.Len(t, hist, 1)
	require.Equal(t, OutcomeStopped, hist[0].Status.Outcome)
	require.Equal(t, policies.VerdictAborted, hist[0].Status.Verdict)
	require.Equal(t, 3, hist[0].Status.Evaluations)

	_, err = e.st.SteadyState(ctx, "Bad/Name", ex.Status.StartedAt)
	require.Error(t, err)
}
