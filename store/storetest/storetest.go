// Package storetest starts real embedded etcd servers for tests.
package storetest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/bulwarkmesh/bulwark/store/embedded"
)

// NewServer starts an embedded etcd on free loopback ports in t.TempDir(),
// without fsync, closed by the test's cleanup. Options may adjust the
// configuration (for example a smaller MaxTxnOps). Use Restart to stop and
// start it again on the same data and ports.
func NewServer(t testing.TB, options ...func(*embedded.Config)) *embedded.Server {
	t.Helper()
	cfg := embedded.Config{
		DataDir:       t.TempDir(),
		ListenClient:  "127.0.0.1:0",
		ListenPeer:    "127.0.0.1:0",
		Logger:        zap.NewNop(),
		UnsafeNoFsync: true,
	}
	for _, o := range options {
		o(&cfg)
	}
	return start(t, cfg)
}

// NewClient returns a client of srv, closed by the test's cleanup (before
// the server, which was started earlier).
func NewClient(t testing.TB, srv *embedded.Server) *clientv3.Client {
	t.Helper()
	cli, err := srv.Client()
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// Stop stops srv; its data stays, and clients keep retrying until Restart.
// Clients with open watches hold the stop for up to about 7 s (etcd's
// graceful stop).
func Stop(srv *embedded.Server) { srv.Stop() }

// Restart starts srv again (stopping it first if it runs) with the same data
// directory and ports; clients created before reconnect by themselves. It
// returns srv, which the test's cleanup still closes after its clients.
func Restart(t testing.TB, srv *embedded.Server) *embedded.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var err error
	// A port just released can take a moment to be free again.
	for attempt := 0; attempt < 20; attempt++ {
		if err = srv.Restart(ctx); err == nil {
			return srv
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("restart embedded etcd: %v", err)
	return nil
}

func start(t testing.TB, cfg embedded.Config) *embedded.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		srv *embedded.Server
		err error
	)
	// A port just released can take a moment to be free again.
	for attempt := 0; attempt < 20; attempt++ {
		if srv, err = embedded.Start(ctx, cfg); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("embedded etcd: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}
