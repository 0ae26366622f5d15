package store

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
)

func TestCRUDAndCompareAndSwap(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)

	svc := service(t, "payments", 9001)
	rev, err := e.st.Put(ctx, svc, -1)
	require.NoError(t, err)
	require.Equal(t, rev, svc.Metadata.Revision)

	// The stored value is the resource's JSON, without the revision.
	raw, err := e.cli.Get(ctx, "/bulwark/v1/services/payments")
	require.NoError(t, err)
	require.Len(t, raw.Kvs, 1)
	var stored map[string]any
	require.NoError(t, json.Unmarshal(raw.Kvs[0].Value, &stored))
	require.Equal(t, "bulwark/v1", stored["apiVersion"])
	require.Equal(t, "Service", stored["kind"])
	require.NotContains(t, stored["metadata"], "revision")

	got, err := e.st.Get(ctx, policies.KindService, "payments")
	require.NoError(t, err)
	require.Equal(t, rev, got.GetMeta().Revision)
	require.Equal(t, svc, got)

	// Create again: conflict naming the current revision.
	_, err = e.st.Put(ctx, service(t, "payments", 9002), -1)
	var ce *ConflictError
	require.ErrorAs(t, err, &ce)
	require.ErrorIs(t, err, ErrConflict)
	require.Equal(t, ConflictError{Kind: "Service", Name: "payments", Expected: -1, Actual: rev}, *ce)

	// Compare-and-swap with the right revision, then with the stale one.
	upd := service(t, "payments", 9003)
	rev2, err := e.st.Put(ctx, upd, rev)
	require.NoError(t, err)
	require.Greater(t, rev2, rev)
	_, err = e.st.Put(ctx, service(t, "payments", 9004), rev)
	require.ErrorAs(t, err, &ce)
	require.Equal(t, rev2, ce.Actual)
	require.Equal(t, rev, ce.Expected)
	require.Contains(t, err.Error(), "expected revision")

	// CAS on something that does not exist.
	_, err = e.st.Put(ctx, policy(t, "p", "payments"), 7)
	require.ErrorAs(t, err, &ce)
	require.Zero(t, ce.Actual)

	_, err = e.st.Put(ctx, policy(t, "p", "payments"), 0)
	require.NoError(t, err)
	list, listRev, err := e.st.List(ctx, policies.KindPolicy)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.GreaterOrEqual(t, listRev, list[0].GetMeta().Revision)

	// Delete: stale revision conflicts, right one deletes, then not found.
	_, err = e.st.Delete(ctx, policies.KindService, "payments", rev)
	require.ErrorIs(t, err, ErrConflict)
	_, err = e.st.Delete(ctx, policies.KindService, "payments", rev2)
	require.NoError(t, err)
	_, err = e.st.Get(ctx, policies.KindService, "payments")
	require.ErrorIs(t, err, ErrNotFound)
	_, err = e.st.Delete(ctx, policies.KindService, "payments", 0)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = e.st.Delete(ctx, policies.KindService, "payments", rev2)
	require.ErrorIs(t, err, ErrNotFound)
}

func TestBadNamesAndKinds(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	_, err := e.st.Get(ctx, "Gateway", "x")
	require.ErrorContains(t, err, `unknown kind "Gateway"`)
	_, err = e.st.Put(ctx, service(t, "a", 1), 0)
	require.NoError(t, err)
	bad := service(t, "a", 1)
	bad.Metadata.Name = "a/b"
	_, err = e.st.Put(ctx, bad, 0)
	require.ErrorContains(t, err, "metadata.name")
	_, err = e.st.Delete(ctx, policies.KindService, "a", -1)
	require.ErrorContains(t, err, "only applies to puts")
}

func TestCustomPrefixAndPing(t *testing.T) {
	e := newEnv(t, Options{Prefix: "team-a/"})
	ctx := testCtx(t)
	require.Equal(t, "/team-a", e.st.Prefix())
	_, err := e.st.Put(ctx, service(t, "a", 1), 0)
	require.NoError(t, err)
	resp, err := e.cli.Get(ctx, "/team-a/v1/services/a")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	require.NoError(t, e.st.Ping(ctx))

	e.srv.Close()
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	err = e.st.Ping(short)
	require.Error(t, err)
	require.ErrorContains(t, err, "etcd unreachable")
	require.False(t, errors.Is(err, ErrNotFound))
}
