package store

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestPutStatusesBatches writes many proxies' status in small transactions
// (no larger than MaxTxnOps, nor statusBatchOps), all under the replica's
// one lease.
func TestPutStatusesBatches(t *testing.T) {
	e := newEnv(t, Options{MaxTxnOps: 8})
	ctx := testCtx(t)
	want := map[string][]byte{}
	for i := range 40 {
		want[fmt.Sprintf("node/%02d", i)] = []byte(fmt.Sprintf(`{"n":%d}`, i))
	}
	before, err := e.cli.Get(ctx, "x")
	require.NoError(t, err)
	require.NoError(t, e.st.PutStatuses(ctx, "replica-a", want))
	all, err := e.st.ListStatus(ctx)
	require.NoError(t, err)
	require.Equal(t, want, all["replica-a"])

	resp, err := e.cli.Get(ctx, "/bulwark/v1/status/replica-a/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 40)
	for _, kv := range resp.Kvs {
		require.Equal(t, resp.Kvs[0].Lease, kv.Lease)
		require.NotZero(t, kv.Lease)
	}
	// 40 puts, at most 8 per transaction: 5 commits (the lease grant does
	// not move the revision).
	require.Equal(t, before.Header.Revision+5, resp.Header.Revision)

	// Without a lower MaxTxnOps, statusBatchOps bounds a transaction.
	big := newEnv(t, Options{})
	before, err = big.cli.Get(ctx, "x")
	require.NoError(t, err)
	require.NoError(t, big.st.PutStatuses(ctx, "replica-a", want))
	after, err := big.cli.Get(ctx, "x")
	require.NoError(t, err)
	require.Equal(t, before.Header.Revision+int64((len(want)+statusBatchOps-1)/statusBatchOps), after.Header.Revision)

	require.NoError(t, e.st.PutStatuses(ctx, "replica-a", nil))
	require.Error(t, e.st.PutStatuses(ctx, "", want), "a replica is required")
}
