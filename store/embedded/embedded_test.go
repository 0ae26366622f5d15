package embedded_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bulwarkmesh/bulwark/store/embedded"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRestartKeepsDataAndPort(t *testing.T) {
	srv := storetest.NewServer(t)
	require.True(t, strings.HasPrefix(srv.Endpoints()[0], "http://127.0.0.1:"))
	require.NotContains(t, srv.Endpoints()[0], ":0")
	require.Equal(t, int(embedded.DefaultMaxTxnOps), srv.MaxTxnOps())

	cli := storetest.NewClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := cli.Put(ctx, "/k", "v")
	require.NoError(t, err)

	before := srv.Endpoints()
	srv = storetest.Restart(t, srv)
	require.Equal(t, before, srv.Endpoints())

	// The old client reconnects by itself and sees the data.
	resp, err := cli.Get(ctx, "/k")
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	require.Equal(t, "v", string(resp.Kvs[0].Value))
}

func TestPortInUseIsAClearError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, err = embedded.Start(context.Background(), embedded.Config{
		DataDir:      t.TempDir(),
		ListenClient: l.Addr().String(),
	})
	require.ErrorContains(t, err, "cannot listen on client address "+l.Addr().String())
	require.ErrorContains(t, err, "in use")
}

func TestDataDirRequired(t *testing.T) {
	_, err := embedded.Start(context.Background(), embedded.Config{})
	require.ErrorContains(t, err, "data directory is required")
}

func TestListenOnEveryInterfaceAdvertisesLoopback(t *testing.T) {
	srv := storetest.NewServer(t, func(c *embedded.Config) { c.ListenClient = "0.0.0.0:0" })
	require.True(t, strings.HasPrefix(srv.Endpoints()[0], "http://127.0.0.1:"), srv.Endpoints()[0])
	cli := storetest.NewClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := cli.Put(ctx, "/k", "v")
	require.NoError(t, err)
}
