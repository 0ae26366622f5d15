package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
)

func TestApplyAsAndListEndpoints(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)

	ex := experiment(t, "payments-503", "10m")
	_, err := e.st.ApplyAs(ctx, []Op{{Put: service(t, "payments", 9001)}, {Put: ex}}, "carol")
	require.NoError(t, err)
	require.Equal(t, "carol", ex.Status.StartedBy)
	_, err = e.st.ApplyAs(ctx, []Op{{DeleteKind: policies.KindExperiment, DeleteName: "payments-503"}}, "dave")
	require.NoError(t, err)
	hist, err := e.st.History(ctx)
	require.NoError(t, err)
	require.Equal(t, "dave", hist[0].Status.StoppedBy)

	_, err = e.st.RegisterEndpoint(ctx, "payments", "pod-b", policies.Endpoint{Address: "10.0.0.2", Port: 80}, time.Minute)
	require.NoError(t, err)
	_, err = e.st.RegisterEndpoint(ctx, "payments", "pod-a", policies.Endpoint{Address: "10.0.0.1", Port: 80}, time.Minute)
	require.NoError(t, err)
	_, err = e.st.RegisterEndpoint(ctx, "ledger", "pod-c", policies.Endpoint{Address: "10.0.0.3", Port: 80}, time.Minute)
	require.NoError(t, err)
	_, err = e.cli.Put(ctx, "/bulwark/v1/endpoints/ledger/static", `{"address":"10.0.0.4","port":81}`)
	require.NoError(t, err)

	all, rev, err := e.st.ListEndpoints(ctx, "")
	require.NoError(t, err)
	require.Positive(t, rev)
	require.Len(t, all, 4)
	require.Equal(t, "ledger", all[0].Service)
	require.Equal(t, "pod-c", all[0].Endpoint.Instance)
	require.Equal(t, int64(-1), all[1].TTLSeconds, "a key without a lease")
	require.Equal(t, "pod-a", all[2].Endpoint.Instance)
	require.InDelta(t, 60, all[2].TTLSeconds, 5)

	some, _, err := e.st.ListEndpoints(ctx, "payments")
	require.NoError(t, err)
	require.Len(t, some, 2)
	_, _, err = e.st.ListEndpoints(ctx, "a/b")
	require.Error(t, err)
}
