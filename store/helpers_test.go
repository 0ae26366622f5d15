package store

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store/embedded"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is one test's embedded etcd, a plain client of it, and a Store.
type env struct {
	srv *embedded.Server
	cli *clientv3.Client
	st  *Store
}

func newEnv(t *testing.T, opts Options, cfg ...func(*embedded.Config)) *env {
	t.Helper()
	srv := storetest.NewServer(t, cfg...)
	cli := storetest.NewClient(t, srv)
	if opts.MaxTxnOps == 0 {
		opts.MaxTxnOps = srv.MaxTxnOps()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	st := New(cli, opts)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return &env{srv: srv, cli: cli, st: st}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func decode(t *testing.T, doc string) policies.Resource {
	t.Helper()
	r, err := policies.DecodeOne([]byte(doc))
	require.NoError(t, err)
	return r
}

func service(t *testing.T, name string, port int) *policies.Service {
	t.Helper()
	return decode(t, `
apiVersion: bulwark/v1
kind: Service
metadata: {name: `+name+`, labels: {tier: critical}}
spec:
  protocol: http
  port: 8080
  endpoints: [{address: 127.0.0.1, port: `+strconv.Itoa(port)+`, zone: z1, weight: 1}]
`).(*policies.Service)
}

func policy(t *testing.T, name, target string) *policies.ResiliencePolicy {
	t.Helper()
	return decode(t, `
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: `+name+`}
spec:
  target: {service: "`+target+`"}
  timeouts: {connect: 1s, request: 3s}
  retries: {attempts: 2, perTryTimeout: 1s, backoff: {base: 25ms, max: 250ms}}
`).(*policies.ResiliencePolicy)
}

func experiment(t *testing.T, name, duration string) *policies.ChaosExperiment {
	t.Helper()
	return decode(t, `
apiVersion: bulwark/v1
kind: ChaosExperiment
metadata: {name: `+name+`}
spec:
  target: {service: payments}
  abort: {percent: 10, httpStatus: 503}
  duration: `+duration+`
  hypothesis: checkout stays up
`).(*policies.ChaosExperiment)
}

// next returns the next watch event, failing after a timeout.
func next(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		require.True(t, ok, "watch channel closed")
		return ev
	case <-time.After(15 * time.Second):
		t.Fatal("no watch event within 15s")
		return Event{}
	}
}

// nextChanges skips events until one with changes arrives.
func nextChanges(t *testing.T, ch <-chan Event) Event {
	t.Helper()
	for {
		if ev := next(t, ch); len(ev.Changes) > 0 || ev.Resync != nil {
			return ev
		}
	}
}
