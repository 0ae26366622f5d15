package store

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store/embedded"
)

func TestApplyIsAllOrNothing(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)

	old := service(t, "ledger", 9001)
	oldRev, err := e.st.Put(ctx, old, 0)
	require.NoError(t, err)

	// The last op compares against a stale revision: nothing is written.
	_, err = e.st.Apply(ctx, []Op{
		{Put: service(t, "payments", 9002)},
		{Put: policy(t, "payments", "payments"), ExpectRev: -1},
		{DeleteKind: policies.KindService, DeleteName: "ledger", ExpectRev: oldRev + 100},
	})
	var ce *ConflictError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "ledger", ce.Name)
	require.Equal(t, oldRev, ce.Actual)
	set, rev, problems, err := e.st.Load(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
	require.Equal(t, oldRev, rev, "a failed apply writes nothing")
	require.Equal(t, []string{"ledger"}, set.ServiceNames())
	require.Empty(t, set.Policies)

	// The same apply with the right revision: one revision for everything.
	svc, pol := service(t, "payments", 9002), policy(t, "payments", "payments")
	rev, err = e.st.Apply(ctx, []Op{
		{Put: svc},
		{Put: pol, ExpectRev: -1},
		{DeleteKind: policies.KindService, DeleteName: "ledger", ExpectRev: oldRev},
		{DeleteKind: policies.KindPolicy, DeleteName: "never-existed"},
	})
	require.NoError(t, err)
	require.Equal(t, rev, svc.Metadata.Revision)
	require.Equal(t, rev, pol.Metadata.Revision)
	set, loadRev, _, err := e.st.Load(ctx)
	require.NoError(t, err)
	require.Equal(t, rev, loadRev)
	require.Equal(t, []string{"payments"}, set.ServiceNames())
	require.Equal(t, rev, set.Policies["payments"].Metadata.Revision)

	// Two changes of one resource in one apply are refused up front.
	_, err = e.st.Apply(ctx, []Op{{Put: service(t, "x", 1)}, {DeleteKind: policies.KindService, DeleteName: "x"}})
	require.ErrorContains(t, err, "already changed by op 0")
	_, err = e.st.Apply(ctx, []Op{{Put: service(t, "x", 1), DeleteKind: policies.KindService}})
	require.ErrorContains(t, err, "either a put or a delete")
}

func manyServices(t *testing.T, n int) []Op {
	ops := make([]Op, n)
	for i := range ops {
		ops[i] = Op{Put: service(t, fmt.Sprintf("svc-%03d", i), 1000+i)}
	}
	return ops
}

func TestApplyTooLarge(t *testing.T) {
	// The store knows the server's limit: refused before etcd sees it.
	e := newEnv(t, Options{MaxTxnOps: 8}, func(c *embedded.Config) { c.MaxTxnOps = 8 })
	ctx := testCtx(t)
	_, err := e.st.Apply(ctx, manyServices(t, 9))
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorContains(t, err, "9 changes need 9 etcd operations, more than the 8 allowed")
	set, _, _, err := e.st.Load(ctx)
	require.NoError(t, err)
	require.Empty(t, set.Services)

	_, err = e.st.Apply(ctx, manyServices(t, 8))
	require.NoError(t, err)

	// An experiment start takes two operations (the key and its record).
	ops := manyServices(t, 7)
	ops = append(ops, Op{Put: experiment(t, "chaos", "1m")})
	_, err = e.st.Apply(ctx, ops)
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorContains(t, err, "8 changes need 9 etcd operations")

	// A store that believes the limit is higher: etcd refuses, still all or nothing.
	wrong := New(e.cli, Options{MaxTxnOps: 100, Logger: e.st.log})
	defer wrong.Close()
	ops = manyServices(t, 12)
	_, err = wrong.Apply(ctx, ops)
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorContains(t, err, "--max-txn-ops")
	set, _, _, err = e.st.Load(ctx)
	require.NoError(t, err)
	require.Len(t, set.Services, 8)
}

func TestApplyTooManyBytes(t *testing.T) {
	e := newEnv(t, Options{}, func(c *embedded.Config) { c.MaxRequestBytes = 64 * 1024 })
	ctx := testCtx(t)
	ops := manyServices(t, 10)
	for _, op := range ops {
		svc := op.Put.(*policies.Service)
		for i := 0; i < 100; i++ {
			svc.Spec.Endpoints = append(svc.Spec.Endpoints, policies.Endpoint{Address: "10.0.0.1", Port: 1000 + i, Zone: "zone-with-a-long-name"})
		}
	}
	_, err := e.st.Apply(ctx, ops)
	require.ErrorIs(t, err, ErrTooLarge)
	require.ErrorContains(t, err, "--max-request-bytes")
	list, _, err := e.st.List(ctx, policies.KindService)
	require.NoError(t, err)
	require.Empty(t, list)
}
