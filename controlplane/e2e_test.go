package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/types/known/wrapperspb"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/store/storetest"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// A policy written to the store reaches a connected client, and changing it
// changes the client's behaviour with no restart.
func TestE2EPolicyChangeReachesClientLive(t *testing.T) {
	h := newHarness(t)
	slow := startBackend(t, "slow", func(ctx context.Context, _ *testgrpc.SimpleRequest) error {
		select {
		case <-time.After(300 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	h.apply(serviceYAML("payments", slow.port) + `---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: 5s}
`)
	c, node := h.dial("checkout", "payments")
	eventually(t, 10*time.Second, func() error { _, err := call(c, 3*time.Second, "x"); return err })

	h.apply(`apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: 50ms}
`)
	eventually(t, 10*time.Second, func() error {
		_, err := call(c, 3*time.Second, "x")
		if codeOf(err) != codes.DeadlineExceeded {
			return fmt.Errorf("want DeadlineExceeded from the 50ms policy, got %v", err)
		}
		return nil
	})
	// The status shows the proxy converged on the latest revision.
	eventually(t, 5*time.Second, func() error {
		r := h.statusReport()
		if r.Rollout.Total != 1 || r.Rollout.Converged != 1 {
			return fmt.Errorf("rollout %+v", r.Rollout)
		}
		p, ok := h.cp.tracker.Proxy(node)
		if !ok || p.Revision != r.Revision {
			return fmt.Errorf("proxy at revision %d, store at %d", p.Revision, r.Revision)
		}
		return nil
	})
	// The metrics tell the same story.
	_, metrics := h.get("/metrics")
	for _, want := range []string{
		`bulwark_connected_proxies{flavor="grpc"} 1`,
		`bulwark_xds_pushes_total{type="routes"}`,
		`bulwark_xds_nacks_total{type="routes"} 0`,
		`bulwark_build_duration_seconds_count`,
		`bulwark_store_up 1`,
		`bulwark_store_revision`,
		`bulwark_convergence_seconds_count`,
	} {
		require.Contains(t, string(metrics), want)
	}
	require.NotContains(t, string(metrics), "bulwark_convergence_seconds_count 0", "ACKs of new revisions are timed")
}

// failFirstAttempt fails the first attempt of every request (by payload) with
// UNAVAILABLE and lets the next one through.
func failFirstAttempt() func(context.Context, *testgrpc.SimpleRequest) error {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(_ context.Context, req *testgrpc.SimpleRequest) error {
		mu.Lock()
		defer mu.Unlock()
		id := string(req.GetPayload().GetBody())
		if !seen[id] {
			seen[id] = true
			return errUnavailable
		}
		return nil
	}
}

// Retries hide a backend that fails first attempts; with attempts 0 the same
// calls fail.
func TestE2ERetries(t *testing.T) {
	h := newHarness(t)
	b := startBackend(t, "flaky", failFirstAttempt())
	h.apply(serviceYAML("payments", b.port) + `---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  retries: {attempts: 2, on: [unavailable], backoff: {base: 10ms, max: 50ms}, budget: {percent: 100}}
`)
	c, _ := h.dial("checkout", "payments")
	// Wait until the retry policy is in force: a fresh request succeeds.
	eventually(t, 10*time.Second, func() error {
		_, err := call(c, 2*time.Second, fmt.Sprintf("warm-%d", time.Now().UnixNano()))
		return err
	})
	for i := range 20 {
		_, err := call(c, 2*time.Second, fmt.Sprintf("retry-%d", i))
		require.NoError(t, err, "call %d should be hidden by a retry", i)
	}

	h.apply(`apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  retries: {attempts: 0}
`)
	eventually(t, 10*time.Second, func() error {
		_, err := call(c, 2*time.Second, fmt.Sprintf("probe-%d", time.Now().UnixNano()))
		if codeOf(err) != codes.Unavailable {
			return fmt.Errorf("want Unavailable without retries, got %v", err)
		}
		return nil
	})
	for i := range 10 {
		_, err := call(c, 2*time.Second, fmt.Sprintf("noretry-%d", i))
		require.Equal(t, codes.Unavailable, codeOf(err), "call %d", i)
	}
}

// A slow backend fails with DEADLINE_EXCEEDED: the policy's 400ms, not the
// caller's own deadline, bounds the call. The backend sees the deadline the
// client sent (grpc-timeout), so the check needs no clock of its own.
func TestE2ETimeout(t *testing.T) {
	h := newHarness(t)
	var budget atomic.Int64 // the deadline the backend saw, as time left on arrival
	b := startBackend(t, "slow", func(ctx context.Context, _ *testgrpc.SimpleRequest) error {
		if d, ok := ctx.Deadline(); ok {
			budget.Store(int64(time.Until(d)))
		}
		<-ctx.Done()
		return ctx.Err()
	})
	h.apply(serviceYAML("payments", b.port) + `---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: 400ms}
`)
	c, _ := h.dial("checkout", "payments")
	eventually(t, 10*time.Second, func() error {
		_, err := call(c, 5*time.Second, "x")
		if codeOf(err) != codes.DeadlineExceeded {
			return fmt.Errorf("want DeadlineExceeded, got %v", err)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	require.Equal(t, codes.DeadlineExceeded, codeOf(err))
	require.NoError(t, ctx.Err(), "the caller's own one-minute deadline fired, not the policy's 400ms")
	require.LessOrEqual(t, time.Duration(budget.Load()), 400*time.Millisecond, "the call's deadline is the policy's 400ms")
	require.Positive(t, budget.Load())
}

// Of three backends, the one that always fails is ejected and then gets no traffic.
func TestE2ECircuitBreakerEjects(t *testing.T) {
	h := newHarness(t)
	good1 := startBackend(t, "good1", nil)
	good2 := startBackend(t, "good2", nil)
	bad := startBackend(t, "bad", func(context.Context, *testgrpc.SimpleRequest) error { return errUnavailable })
	h.apply(serviceYAML("payments", good1.port, good2.port, bad.port) + `---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  circuitBreaker:
    failurePercentage: {threshold: 50, minimumHosts: 3, requestVolume: 5}
    interval: 1s
    baseEjectionTime: 60s
    maxEjectionPercent: 50
`)
	c, _ := h.dial("checkout", "payments")
	// Round robin uses only connected backends: wait until all three answered.
	seen := map[string]bool{}
	eventually(t, 10*time.Second, func() error {
		host, err := call(c, time.Second, "x")
		if err == nil {
			seen[host] = true
		}
		if bad.calls.Load() > 0 {
			seen["bad"] = true
		}
		if len(seen) < 3 {
			return fmt.Errorf("backends seen: %v", seen)
		}
		return nil
	})
	// Keep calling until the failing backend is ejected.
	eventually(t, 15*time.Second, func() error {
		before := bad.calls.Load()
		for range 30 {
			call(c, time.Second, "x")
		}
		if n := bad.calls.Load() - before; n > 0 {
			return fmt.Errorf("bad backend still got %d of 30 calls", n)
		}
		return nil
	})
	before := bad.calls.Load()
	for i := range 60 {
		_, err := call(c, time.Second, "x")
		require.NoError(t, err, "call %d after ejection", i)
	}
	require.Equal(t, before, bad.calls.Load(), "an ejected backend must get no traffic")
	require.Positive(t, good1.calls.Load())
	require.Positive(t, good2.calls.Load())
}

// With maxRequests 2, calls above two in flight fail fast.
func TestE2EBulkhead(t *testing.T) {
	h := newHarness(t)
	gate := newBlocker()
	defer gate.release()
	var inflight atomic.Int64
	b := startBackend(t, "held", func(ctx context.Context, req *testgrpc.SimpleRequest) error {
		if string(req.GetPayload().GetBody()) != "hold" {
			return nil
		}
		inflight.Add(1)
		defer inflight.Add(-1)
		return gate.wait(ctx)
	})
	h.apply(serviceYAML("payments", b.port) + `---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  bulkhead: {maxRequests: 2}
`)
	c, _ := h.dial("checkout", "payments")
	eventually(t, 10*time.Second, func() error { _, err := call(c, time.Second, "x"); return err })
	// The bulkhead arrives with the cluster; wait until it refuses a third call.
	var wg sync.WaitGroup
	defer wg.Wait()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call(c, 20*time.Second, "hold")
		}()
	}
	eventually(t, 5*time.Second, func() error {
		if n := inflight.Load(); n != 2 {
			return fmt.Errorf("%d calls in flight", n)
		}
		return nil
	})
	before := b.calls.Load()
	_, err := call(c, 5*time.Second, "third")
	require.Equal(t, codes.Unavailable, codeOf(err), "a third call must be refused by the bulkhead, got %v", err)
	require.Equal(t, before, b.calls.Load(), "the refused call never reached the backend")
	gate.release()
	wg.Wait()
	_, err = call(c, 5*time.Second, "after")
	require.NoError(t, err, "calls pass again once the pool drains")
}

// When the primary has no healthy host, the fallback service serves.
func TestE2EFallback(t *testing.T) {
	h := newHarness(t)
	static := startBackend(t, "static", nil)
	dead := startBackend(t, "dead", nil)
	deadPort := dead.port
	dead.srv.Stop() // nothing listens there any more
	h.apply(serviceYAML("payments", deadPort) + "---\n" + serviceYAML("payments-static", static.port) + `---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  fallback: {service: payments-static}
`)
	c, _ := h.dial("checkout", "payments")
	eventually(t, 15*time.Second, func() error {
		host, err := call(c, 2*time.Second, "x")
		if err != nil {
			return err
		}
		if host != "static" {
			return fmt.Errorf("served by %q", host)
		}
		return nil
	})
	for range 10 {
		host, err := call(c, 2*time.Second, "x")
		require.NoError(t, err)
		require.Equal(t, "static", host)
	}
}

// An experiment that aborts every call fails them with its status; when its
// lease ends, calls succeed again with nothing else done.
func TestE2EChaosExpires(t *testing.T) {
	h := newHarness(t)
	b := startBackend(t, "ok", nil)
	h.apply(serviceYAML("payments", b.port))
	c, _ := h.dial("checkout", "payments")
	eventually(t, 10*time.Second, func() error { _, err := call(c, time.Second, "x"); return err })

	h.apply(`apiVersion: bulwark/v1
kind: ChaosExperiment
metadata: {name: payments-exhausted}
spec:
  target: {service: payments}
  abort: {percent: 100, grpcStatus: 8}
  duration: 3s
  hypothesis: callers degrade gracefully
`)
	eventually(t, 5*time.Second, func() error {
		_, err := call(c, time.Second, "x")
		if codeOf(err) != codes.ResourceExhausted {
			return fmt.Errorf("want ResourceExhausted from the experiment, got %v", err)
		}
		return nil
	})
	eventually(t, 15*time.Second, func() error { _, err := call(c, time.Second, "x"); return err })
	for range 5 {
		_, err := call(c, time.Second, "x")
		require.NoError(t, err)
	}
}

// With etcd stopped, clients keep their last config and readiness turns 503
// after the grace period; when etcd is back, changes flow again.
func TestE2EStoreOutage(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.StoreGrace = time.Second })
	b := startBackend(t, "ok", nil)
	h.apply(serviceYAML("payments", b.port))
	c, _ := h.dial("checkout", "payments")
	eventually(t, 10*time.Second, func() error { _, err := call(c, time.Second, "x"); return err })

	storetest.Stop(h.etcd)
	eventually(t, 10*time.Second, func() error {
		code, body := h.get("/health/ready")
		if code != http.StatusServiceUnavailable {
			return fmt.Errorf("ready answered %d %s", code, body)
		}
		return nil
	})
	for range 10 {
		_, err := call(c, time.Second, "x")
		require.NoError(t, err, "clients keep the last good config while etcd is down")
	}
	code, _ := h.get("/health/live")
	require.Equal(t, http.StatusOK, code)

	h.etcd = storetest.Restart(t, h.etcd)
	h.waitReady()
	b2 := startBackend(t, "new", nil)
	h.apply(serviceYAML("payments", b2.port))
	eventually(t, 15*time.Second, func() error {
		host, err := call(c, time.Second, "x")
		if err != nil || host != "new" {
			return fmt.Errorf("served by %q, err %v", host, err)
		}
		return nil
	})
}

// A config the client rejects is sent to it at most twice, and the next good
// version reaches it.
func TestE2ENackNeverResent(t *testing.T) {
	h := newHarness(t)
	b := startBackend(t, "ok", nil)
	h.apply(serviceYAML("payments", b.port))
	c, node := h.dial("checkout", "payments")
	eventually(t, 10*time.Second, func() error { _, err := call(c, time.Second, "x"); return err })

	var sends sync.Map // version → *atomic.Int64, route responses to our node
	defer h.cp.tracker.SetOnSent(nil)
	h.cp.tracker.SetOnSent(func(nodeID, typeURL, version string) {
		if nodeID == node && typeURL == resourcev3.RouteType {
			n, _ := sends.LoadOrStore(version, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}
	})
	var poison atomic.Bool
	poison.Store(true)
	h.cp.builder.SetMutate(func(_ xdsserver.GroupKey, res *translate.Resources) {
		if !poison.Load() {
			return
		}
		// gRPC rejects a retry policy with num_retries 0.
		for _, rc := range res.Routes {
			for _, vh := range rc.GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					if ra := r.GetRoute(); ra != nil {
						ra.RetryPolicy = &routev3.RetryPolicy{RetryOn: "unavailable", NumRetries: wrapperspb.UInt32(0)}
					}
				}
			}
		}
	})
	h.apply(`apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: 2s}
`)
	var bad string
	eventually(t, 10*time.Second, func() error {
		p, _ := h.cp.tracker.Proxy(node)
		if ts := p.Types["routes"]; ts != nil && ts.LastNack != nil {
			bad = ts.LastNack.Version
			return nil
		}
		return fmt.Errorf("no NACK recorded yet")
	})
	time.Sleep(500 * time.Millisecond) // time enough for a resend loop to show
	n, _ := sends.Load(bad)
	require.NotNil(t, n)
	require.LessOrEqual(t, n.(*atomic.Int64).Load(), int64(2), "a NACKed version must not be resent")
	r := h.statusReport()
	require.Equal(t, 1, r.Rollout.Rejecting, "status shows the rejecting proxy")

	// The next good version reaches the proxy.
	poison.Store(false)
	h.apply(`apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: 3s}
`)
	eventually(t, 10*time.Second, func() error {
		p, _ := h.cp.tracker.Proxy(node)
		if !p.Converged {
			return fmt.Errorf("proxy not converged: %+v", p.Types["routes"])
		}
		return nil
	})
	n, _ = sends.Load(bad)
	require.LessOrEqual(t, n.(*atomic.Int64).Load(), int64(2))
	_, err := call(c, time.Second, "x")
	require.NoError(t, err)
}

// A client that knows only the store layout writes the JSON of the resources
// straight into etcd, with no lease on its experiment; the xDS client sees
// the policy, then the experiment, which still ends by itself.
func TestE2ERawEtcdWrites(t *testing.T) {
	h := newHarness(t)
	b := startBackend(t, "slowish", func(ctx context.Context, req *testgrpc.SimpleRequest) error {
		if string(req.GetPayload().GetBody()) != "slow" {
			return nil
		}
		select {
		case <-time.After(time.Second):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	cli := storetest.NewClient(t, h.etcd)
	ctx := context.Background()
	put := func(key, value string) {
		_, err := cli.Put(ctx, "/bulwark/v1/"+key, value)
		require.NoError(t, err)
	}
	put("services/payments", fmt.Sprintf(`{"apiVersion":"bulwark/v1","kind":"Service","metadata":{"name":"payments"},
		"spec":{"protocol":"grpc","port":50051,"endpoints":[{"address":"127.0.0.1","port":%d,"zone":"z1"}]}}`, b.port))
	put("policies/payments", `{"apiVersion":"bulwark/v1","kind":"ResiliencePolicy","metadata":{"name":"payments"},
		"spec":{"target":{"service":"payments"},"timeouts":{"request":"200ms"}}}`)
	c, _ := h.dial("checkout", "payments")
	eventually(t, 10*time.Second, func() error {
		if _, err := call(c, 3*time.Second, "fast"); err != nil {
			return err
		}
		if _, err := call(c, 3*time.Second, "slow"); codeOf(err) != codes.DeadlineExceeded {
			return fmt.Errorf("want the 200ms policy to fire, got %v", err)
		}
		return nil
	})

	put("experiments/payments-down", `{"apiVersion":"bulwark/v1","kind":"ChaosExperiment","metadata":{"name":"payments-down"},
		"spec":{"target":{"service":"payments"},"abort":{"percent":100,"grpcStatus":14},"duration":"2s"}}`)
	eventually(t, 5*time.Second, func() error {
		if _, err := call(c, time.Second, "fast"); codeOf(err) != codes.Unavailable {
			return fmt.Errorf("want Unavailable from the experiment, got %v", err)
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error { _, err := call(c, time.Second, "fast"); return err })
	resp, err := cli.Get(ctx, "/bulwark/v1/experiments/payments-down")
	require.NoError(t, err)
	require.Empty(t, resp.Kvs, "the experiment's key is gone with its lease")
}
