package writelog_test

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/controlplane/writelog"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

// The store and the embedded etcd start goroutines; every test must leave
// none behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newLog(t *testing.T, keep int) (*writelog.Log, *store.Store) {
	t.Helper()
	srv := storetest.NewServer(t)
	cli := storetest.NewClient(t, srv)
	st := store.New(cli, store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxTxnOps: srv.MaxTxnOps()})
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return writelog.New(apply.New(st, policies.ValidateOptions{}), st, keep, slog.New(slog.NewTextHandler(io.Discard, nil))), st
}

func decodeAll(t *testing.T, docs string) []policies.Resource {
	t.Helper()
	rs, err := policies.DecodeAll([]byte(docs))
	require.NoError(t, err)
	return rs
}

func service(name string, port int) string {
	return "apiVersion: bulwark/v1\nkind: Service\nmetadata: {name: " + name + "}\nspec: {port: " + strconv.Itoa(port) + "}\n"
}

// Every write that changed the store is recorded with who, what, when and
// the revisions before and after; a write that changed nothing, a dry run
// and a refused write are not.
func TestRecordsWrites(t *testing.T) {
	l, st := newLog(t, 100)
	ctx := context.Background()
	start := time.Now().UTC().Add(-time.Second)

	created, err := l.Put(ctx, decodeAll(t, service("payments", 80))[0], 0, "alice")
	require.NoError(t, err)
	require.Equal(t, api.ActionCreated, created.Action)
	updated, err := l.Put(ctx, decodeAll(t, service("payments", 81))[0], 0, "bob")
	require.NoError(t, err)
	_, err = l.Put(ctx, decodeAll(t, service("payments", 81))[0], 0, "bob") // unchanged
	require.NoError(t, err)
	_, err = l.Put(ctx, decodeAll(t, service("payments", 82))[0], 1, "mallory") // stale revision: refused
	require.Error(t, err)
	_, err = l.Apply(ctx, apply.Request{Resources: decodeAll(t, service("orders", 80)), DryRun: true, Who: "ci"})
	require.NoError(t, err)
	applied, err := l.Apply(ctx, apply.Request{Resources: decodeAll(t, service("orders", 80)+"---\n"+service("users", 80)), Source: "ci", Who: "ci-token"})
	require.NoError(t, err)
	pruned, err := l.Apply(ctx, apply.Request{Resources: decodeAll(t, service("orders", 90)), Source: "ci", Prune: true, Who: "ci-token"})
	require.NoError(t, err)
	deleted, err := l.Delete(ctx, policies.KindService, "payments", 0, "alice")
	require.NoError(t, err)

	h, err := l.Writes(ctx, 100)
	require.NoError(t, err)
	require.Equal(t, 100, h.Kept)
	for i := range h.Items {
		require.False(t, h.Items[i].Time.Before(start), "time %s", h.Items[i].Time)
		h.Items[i].Time = time.Time{}
	}
	require.Equal(t, []api.WriteRecord{
		{Revision: deleted.Revision, Who: "alice", Operation: api.OperationDelete, Items: []api.WriteItem{
			{Kind: policies.KindService, Name: "payments", Action: api.ActionDeleted, RevisionBefore: updated.Revision}}},
		{Revision: pruned.Revision, Who: "ci-token", Operation: api.OperationApply, Source: "ci", Prune: true, Items: []api.WriteItem{
			{Kind: policies.KindService, Name: "orders", Action: api.ActionUpdated, RevisionBefore: applied.Revision, RevisionAfter: pruned.Revision},
			{Kind: policies.KindService, Name: "users", Action: api.ActionDeleted, RevisionBefore: applied.Revision}}},
		{Revision: applied.Revision, Who: "ci-token", Operation: api.OperationApply, Source: "ci", Items: []api.WriteItem{
			{Kind: policies.KindService, Name: "orders", Action: api.ActionCreated, RevisionAfter: applied.Revision},
			{Kind: policies.KindService, Name: "users", Action: api.ActionCreated, RevisionAfter: applied.Revision}}},
		{Revision: updated.Revision, Who: "bob", Operation: api.OperationPut, Items: []api.WriteItem{
			{Kind: policies.KindService, Name: "payments", Action: api.ActionUpdated, RevisionBefore: created.Revision, RevisionAfter: updated.Revision}}},
		{Revision: created.Revision, Who: "alice", Operation: api.OperationPut, Items: []api.WriteItem{
			{Kind: policies.KindService, Name: "payments", Action: api.ActionCreated, RevisionAfter: created.Revision}}},
	}, h.Items)

	// The records are not resources: the store's readers skip them.
	set, _, problems, err := st.Load(ctx)
	require.NoError(t, err)
	require.Empty(t, problems)
	require.Len(t, set.Services, 1)
}

// The history keeps the newest records only.
func TestKeepsTheNewest(t *testing.T) {
	l, _ := newLog(t, 3)
	ctx := context.Background()
	var revs []int64
	for i := 1; i <= 5; i++ {
		res, err := l.Put(ctx, decodeAll(t, service("payments", 80+i))[0], 0, "alice")
		require.NoError(t, err)
		revs = append(revs, res.Revision)
	}
	h, err := l.Writes(ctx, 100)
	require.NoError(t, err)
	var got []int64
	for _, r := range h.Items {
		got = append(got, r.Revision)
	}
	require.Equal(t, []int64{revs[4], revs[3], revs[2]}, got)

	h, err = l.Writes(ctx, 1)
	require.NoError(t, err)
	require.Len(t, h.Items, 1)
	require.Equal(t, revs[4], h.Items[0].Revision)
}
