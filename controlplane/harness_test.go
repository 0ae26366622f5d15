package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	xdsgrpc "google.golang.org/grpc/xds"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/embedded"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

// harness is a real control plane over a real embedded etcd, with loopback
// gRPC backends and gRPC's own xDS client.
type harness struct {
	t     *testing.T
	etcd  *embedded.Server
	cp    *ControlPlane
	store *store.Store
	cfg   Config
}

func newHarness(t *testing.T, tune ...func(*Config)) *harness {
	t.Helper()
	srv := storetest.NewServer(t)
	cfg := Config{
		XDSAddr:         "127.0.0.1:0",
		AdminAddr:       "127.0.0.1:0",
		EtcdEndpoints:   srv.Endpoints(),
		Replica:         "test",
		Debounce:        10 * time.Millisecond,
		MaxDelay:        50 * time.Millisecond,
		StoreGrace:      2 * time.Second,
		MaxFaultPercent: 100,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, f := range tune {
		f(&cfg)
	}
	cp, err := New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, cp.Start(ctx))
	t.Cleanup(func() {
		cancel()
		cp.Stop()
	})
	h := &harness{t: t, etcd: srv, cp: cp, store: cp.Store(), cfg: cfg}
	h.waitReady()
	return h
}

// waitReady waits until /health/ready answers 200.
func (h *harness) waitReady() {
	h.t.Helper()
	require.Eventually(h.t, func() bool {
		code, _ := h.get("/health/ready")
		return code == http.StatusOK
	}, 15*time.Second, 20*time.Millisecond, "control plane never became ready")
}

// get fetches an admin path and returns the status code and body.
func (h *harness) get(path string) (int, []byte) {
	resp, err := http.Get("http://" + h.cp.AdminAddr() + path)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// apply decodes a YAML bundle and writes every resource to the store.
func (h *harness) apply(bundle string) {
	h.t.Helper()
	rs, err := policies.DecodeAll([]byte(bundle))
	require.NoError(h.t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, r := range rs {
		require.Empty(h.t, policies.Validate(r, policies.ValidateOptions{MaxFaultPercent: 100}), "test input must validate")
		if e, ok := r.(*policies.ChaosExperiment); ok {
			_, err := h.store.StartExperiment(ctx, e, "test")
			require.NoError(h.t, err)
			continue
		}
		_, err := h.store.Put(ctx, r, 0)
		require.NoError(h.t, err)
	}
}

// backend is a loopback gRPC test server whose answers a test controls.
type backend struct {
	testgrpc.UnimplementedTestServiceServer
	name   string
	port   int
	calls  atomic.Int64
	handle func(ctx context.Context, req *testgrpc.SimpleRequest) error
	srv    *grpc.Server
}

func (b *backend) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b.calls.Add(1)
	if b.handle != nil {
		if err := b.handle(ctx, req); err != nil {
			return nil, err
		}
	}
	return &testgrpc.SimpleResponse{Hostname: b.name}, nil
}

func startBackend(t *testing.T, name string, handle func(ctx context.Context, req *testgrpc.SimpleRequest) error) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &backend{name: name, port: lis.Addr().(*net.TCPAddr).Port, handle: handle, srv: grpc.NewServer()}
	testgrpc.RegisterTestServiceServer(b.srv, b)
	go b.srv.Serve(lis)
	t.Cleanup(b.srv.Stop)
	return b
}

var nodeSeq atomic.Int64

// dial connects gRPC's xDS client, as a proxy of service source, to
// xds:///target through the harness's control plane.
func (h *harness) dial(source, target string) (testgrpc.TestServiceClient, string) {
	h.t.Helper()
	nodeID := fmt.Sprintf("%s-%d", source, nodeSeq.Add(1))
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "cluster": %q, "locality": {"zone": "z1"}}
	}`, h.cp.XDSAddr(), nodeID, source)
	res, err := xdsgrpc.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	require.NoError(h.t, err)
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(res))
	require.NoError(h.t, err)
	h.t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc), nodeID
}

// call makes one unary call with a deadline and returns the serving backend.
func call(c testgrpc.TestServiceClient, timeout time.Duration, payload string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte(payload)}})
	if err != nil {
		return "", err
	}
	return resp.GetHostname(), nil
}

// eventually retries cond until it holds, failing the test with the last error.
func eventually(t *testing.T, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		if last = cond(); last == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %v", within, last)
}

func codeOf(err error) codes.Code { return status.Code(err) }

// service returns a Service YAML with loopback endpoints on the given ports.
func serviceYAML(name string, ports ...int) string {
	y := fmt.Sprintf("apiVersion: bulwark/v1\nkind: Service\nmetadata: {name: %s}\nspec:\n  protocol: grpc\n  port: 50051\n  endpoints:\n", name)
	for _, p := range ports {
		y += "    - {address: 127.0.0.1, port: " + strconv.Itoa(p) + ", zone: z1}\n"
	}
	return y
}

// statusReport reads GET /v1/status.
func (h *harness) statusReport() api.StatusReport {
	h.t.Helper()
	_, body := h.get("/v1/status")
	var r api.StatusReport
	require.NoError(h.t, json.Unmarshal(body, &r))
	return r
}

// blocker holds calls until released.
type blocker struct {
	once sync.Once
	ch   chan struct{}
}

func newBlocker() *blocker  { return &blocker{ch: make(chan struct{})} }
func (b *blocker) release() { b.once.Do(func() { close(b.ch) }) }
func (b *blocker) wait(ctx context.Context) error {
	select {
	case <-b.ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errUnavailable = status.Error(codes.Unavailable, "backend says no")

var _ = errors.New
