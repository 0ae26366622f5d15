package store

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestPutStatusesBatches writes many proxies' status in transactions no
// larger than MaxTxnOps, all under the replica's one lease.
func TestPutStatusesBatches(t *testing.T) {
	e := newEnv(t, Options{MaxTxnOps: 8})
	ctx := testCtx(t)
	want := map[string][]byte{}
	for i := range 30 {
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
	require.Len(t, resp.Kvs, 30)
	for _, kv := range resp.Kvs {
		require.Equal(t, resp.Kvs[0].Lease, kv.Lease)
		require.NotZero(t, kv.Lease)
	}
	// 30 puts at most 8 per transaction: 4 commits (plus the lease grant,
	// which does not move the revision).
	require.Equal(t, before.Header.Revision+4, resp.Header.Revision)

	require.NoError(t, e.st.PutStatuses(ctx, "replica-a", nil))
	require.Error(t, e.st.PutStatuses(ctx, "", want), "a replica is required")
}
