package store

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestStatusIsLeasedPerReplica(t *testing.T) {
	var lost atomic.Value
	e := newEnv(t, Options{StatusTTL: 3 * time.Second, OnStatusLost: func(r string) { lost.Store(r) }})
	ctx := testCtx(t)

	require.NoError(t, e.st.PutStatus(ctx, "replica-a", "sidecar~10.0.0.1~pod/1", []byte(`{"acked":"v1"}`)))
	require.NoError(t, e.st.PutStatus(ctx, "replica-a", "node-2", []byte(`{"acked":"v2"}`)))
	require.NoError(t, e.st.PutStatus(ctx, "replica-b", "node-3", []byte(`{"acked":"v1"}`)))
	all, err := e.st.ListStatus(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]map[string][]byte{
		"replica-a": {"sidecar~10.0.0.1~pod/1": []byte(`{"acked":"v1"}`), "node-2": []byte(`{"acked":"v2"}`)},
		"replica-b": {"node-3": []byte(`{"acked":"v1"}`)},
	}, all)

	// One lease per replica.
	resp, err := e.cli.Get(ctx, "/bulwark/v1/status/replica-a/", clientv3.WithPrefix())
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 2)
	require.Equal(t, resp.Kvs[0].Lease, resp.Kvs[1].Lease)
	leaseA := clientv3.LeaseID(resp.Kvs[0].Lease)

	// Kept alive past its TTL.
	time.Sleep(4 * time.Second)
	all, err = e.st.ListStatus(ctx)
	require.NoError(t, err)
	require.Len(t, all["replica-a"], 2)

	require.NoError(t, e.st.DeleteStatus(ctx, "replica-a", "node-2"))
	all, err = e.st.ListStatus(ctx)
	require.NoError(t, err)
	require.Len(t, all["replica-a"], 1)

	// The lease ends behind the Store's back: it says so, and the next
	// write works under a new lease.
	_, err = e.cli.Revoke(ctx, leaseA)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return lost.Load() == "replica-a" }, 5*time.Second, 20*time.Millisecond)
	require.NoError(t, e.st.PutStatus(ctx, "replica-a", "node-2", []byte(`{"acked":"v3"}`)))
	all, err = e.st.ListStatus(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string][]byte{"node-2": []byte(`{"acked":"v3"}`)}, all["replica-a"])

	// Close takes the replica's status with it.
	require.NoError(t, e.st.Close())
	all, err = e.st.ListStatus(ctx)
	require.NoError(t, err)
	require.Empty(t, all)
	require.Error(t, e.st.PutStatus(ctx, "replica-a", "node-2", nil))
}
