package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bulwarkmesh/bulwark/policies"
)

func TestEndpointLeaseExpiresAndWatchSeesIt(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	_, err := e.st.Put(ctx, service(t, "payments", 9002), 0)
	require.NoError(t, err)
	ch := e.st.Watch(ctx, 0)
	require.NotNil(t, next(t, ch).Resync)

	_, err = e.st.RegisterEndpoint(ctx, "payments", "pod-1", policies.Endpoint{Address: "10.0.0.7", Port: 8080, Zone: "z1"}, time.Second)
	require.NoError(t, err)
	ev := nextChanges(t, ch)
	require.Equal(t, "pod-1", ev.Changes[0].Instance)
	require.NotNil(t, ev.Changes[0].Endpoint)

	set, _, _, err := e.st.Load(ctx)
	require.NoError(t, err)
	require.Len(t, set.EndpointsOf("payments"), 2) // static + registered

	// Nobody renews it: the lease ends and the watch reports the delete.
	ev = nextChanges(t, ch)
	require.True(t, ev.Changes[0].Deleted())
	require.Equal(t, "payments/pod-1", ev.Changes[0].Name)

	set, _, _, err = e.st.Load(ctx)
	require.NoError(t, err)
	require.Empty(t, set.Registered)
	_, err = e.st.KeepAliveEndpoint(ctx, "payments", "pod-1")
	require.ErrorIs(t, err, ErrNotFound)
}

func TestKeepAliveRenewsEndpoint(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	ep := policies.Endpoint{Address: "10.0.0.8", Port: 8080}
	_, err := e.st.RegisterEndpoint(ctx, "payments", "pod-2", ep, 2*time.Second)
	require.NoError(t, err)

	// Renewed well past its TTL, it stays.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		ttl, err := e.st.KeepAliveEndpoint(ctx, "payments", "pod-2")
		require.NoError(t, err)
		require.GreaterOrEqual(t, ttl, 2*time.Second)
		time.Sleep(500 * time.Millisecond)
	}
	set, _, _, err := e.st.Load(ctx)
	require.NoError(t, err)
	require.Contains(t, set.Registered["payments"], "pod-2")

	// Registering again moves it to a new lease and ends the old one.
	old, err := e.cli.Get(ctx, "/bulwark/v1/endpoints/payments/pod-2")
	require.NoError(t, err)
	ep.Port = 8081
	_, err = e.st.RegisterEndpoint(ctx, "payments", "pod-2", ep, time.Minute)
	require.NoError(t, err)
	ttl, err := e.cli.TimeToLive(ctx, clientv3.LeaseID(old.Kvs[0].Lease))
	require.NoError(t, err)
	require.Equal(t, int64(-1), ttl.TTL, "the old lease was revoked")

	_, err = e.st.DeregisterEndpoint(ctx, "payments", "pod-2")
	require.NoError(t, err)
	_, err = e.st.DeregisterEndpoint(ctx, "payments", "pod-2")
	require.ErrorIs(t, err, ErrNotFound)

	// Bad registrations are refused with the field.
	_, err = e.st.RegisterEndpoint(ctx, "payments", "pod-3", policies.Endpoint{Address: "", Port: 70000}, time.Minute)
	require.ErrorContains(t, err, "address: required")
	require.ErrorContains(t, err, "port: must be 1-65535")
	_, err = e.st.RegisterEndpoint(ctx, "payments", "a/b", ep, time.Minute)
	require.ErrorContains(t, err, "instance")
	_, err = e.st.RegisterEndpoint(ctx, "payments", "pod-3", ep, 0)
	require.ErrorContains(t, err, "ttl")
}
