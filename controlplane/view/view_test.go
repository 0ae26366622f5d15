package view_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bulwarkmesh/bulwark/controlplane/view"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

// Run follows the store's watch; every test must stop it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func resource(t *testing.T, doc string) policies.Resource {
	t.Helper()
	r, err := policies.DecodeOne([]byte(doc))
	require.NoError(t, err)
	return r
}

// The view follows the store: a read waits until it has the revision asked
// for, then sees the writes up to it, indexed; a stopped view reads the
// store itself.
func TestViewFollowsTheStore(t *testing.T) {
	srv := storetest.NewServer(t)
	cli := storetest.NewClient(t, srv)
	st := store.New(cli, store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxTxnOps: srv.MaxTxnOps()})
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v := view.New(st, nil)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.Run(runCtx)
	}()

	_, err := st.Put(ctx, resource(t, "apiVersion: bulwark/v1\nkind: Service\nmetadata: {name: payments}\nspec: {port: 80}\n"), 0)
	require.NoError(t, err)
	rev, err := st.Put(ctx, resource(t, "apiVersion: bulwark/v1\nkind: ResiliencePolicy\nmetadata: {name: pay, source: ci}\nspec: {target: {service: payments}, fallback: {service: static}}\n"), 0)
	require.NoError(t, err)
	require.NoError(t, v.Read(ctx, rev, func(x *view.Index) error {
		require.GreaterOrEqual(t, x.Revision(), rev)
		require.NotNil(t, x.Get(policies.KindPolicy, "pay"))
		require.Len(t, x.OwnedBy("ci"), 1)
		require.Len(t, x.Referrers("static"), 1, "indexed by fallback")
		require.Len(t, x.Referrers("payments"), 1, "indexed by target")
		return nil
	}))
	_, err = st.Delete(ctx, policies.KindPolicy, "pay", 0)
	require.NoError(t, err)
	rev, err = st.Put(ctx, resource(t, "apiVersion: bulwark/v1\nkind: Service\nmetadata: {name: ledger}\nspec: {port: 80}\n"), 0)
	require.NoError(t, err)
	require.NoError(t, v.Read(ctx, rev, func(x *view.Index) error {
		require.Nil(t, x.Get(policies.KindPolicy, "pay"))
		require.Empty(t, x.OwnedBy("ci"))
		require.Empty(t, x.Referrers("static"))
		require.NotNil(t, x.Get(policies.KindService, "ledger"))
		return nil
	}))

	stop()
	<-done
	require.NoError(t, v.Read(ctx, 0, func(x *view.Index) error {
		require.NotNil(t, x.Get(policies.KindService, "ledger"), "read from the store")
		return nil
	}))
}
