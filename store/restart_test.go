package store

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

func TestRestartKeepsDataAndWatchGoesOn(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	_, err := e.st.Put(ctx, service(t, "payments", 9002), 0)
	require.NoError(t, err)
	_, err = e.st.StartExperiment(ctx, experiment(t, "payments-503", "10m"), "alice")
	require.NoError(t, err)
	ch := e.st.Watch(ctx, 0)
	require.NotNil(t, next(t, ch).Resync)

	start := time.Now()
	storetest.Stop(e.srv)
	t.Logf("stopped in %s", time.Since(start))

	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	require.Error(t, e.st.Ping(short))

	start = time.Now()
	e.srv = storetest.Restart(t, e.srv)
	t.Logf("restarted in %s", time.Since(start))
	start = time.Now()
	require.NoError(t, e.st.Ping(ctx))
	t.Logf("reachable in %s", time.Since(start))

	set, _, problems, err := e.st.Load(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
	require.Equal(t, []string{"payments"}, set.ServiceNames())
	require.Contains(t, set.Experiments, "payments-503")

	// The watch reconnected by itself and sees what happens next.
	rev, err := e.st.Put(ctx, policy(t, "payments", "payments"), 0)
	require.NoError(t, err)
	ev := nextChanges(t, ch)
	require.Nil(t, ev.Resync)
	require.Equal(t, rev, ev.Revision)
	require.Equal(t, policies.KindPolicy, ev.Changes[0].Kind)
}
