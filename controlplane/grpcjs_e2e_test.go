package controlplane

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// End-to-end scenarios with grpc-js (@grpc/grpc-js with @grpc/grpc-js-xds,
// pinned in test/grpcjs/package-lock.json) as the proxyless client, beside
// gRPC-Go's in e2e_test.go and C-core's in ccore_e2e_test.go. Each scenario
// starts its own Node.js process (grpcjs_client_test.go).

// grpcjsOK is a call that must succeed and be served by want ("" for any).
func callOK(c *lineClient, target, want string, md map[string]string) error {
	r := c.call(target, 3*time.Second, "x", md)
	if err := r.Err(); err != nil {
		return err
	}
	if want != "" && r.Hostname != want {
		return fmt.Errorf("%s served by %q, want %q", target, r.Hostname, want)
	}
	return nil
}

// Each service routes to its own backends, and a client reaches them by name.
func TestGrpcJSRouting(t *testing.T) {
	h := newHarness(t)
	pay := startBackend(t, "payments-1", nil)
	inv := startBackend(t, "inventory-1", nil)
	h.apply(serviceYAML("payments", pay.port) + "---\n" + serviceYAML("inventory", inv.port))
	c := h.startGrpcJS("checkout")
	for target, want := range map[string]string{"payments": "payments-1", "inventory": "inventory-1"} {
		eventually(t, 20*time.Second, func() error { return callOK(c, target, want, nil) })
		for range 5 {
			require.NoError(t, callOK(c, target, want, nil))
		}
	}
	// The client ACKed what it was sent.
	eventually(t, 10*time.Second, func() error {
		p, ok := h.cp.tracker.Proxy(c.node)
		if !ok {
			return fmt.Errorf("grpc-js proxy %s unknown to status", c.node)
		}
		if !p.Converged {
			return fmt.Errorf("grpc-js proxy not converged: %+v", p.Types)
		}
		return nil
	})
}

// A policy change reaches a connected grpc-js client with no restart: a
// call the backend answers after 2 s succeeds under a 30 s request timeout,
// then fails with DEADLINE_EXCEEDED once the policy says 500 ms. The
// client's own deadline (20 s) is far off and the backend never fails, so
// only the route's max_stream_duration can end the call.
func TestGrpcJSPolicyChangeReachesClientLive(t *testing.T) {
	h := newHarness(t)
	b := startBackend(t, "slowish", func(ctx context.Context, req *testgrpc.SimpleRequest) error {
		if string(req.GetPayload().GetBody()) != "slow" {
			return nil
		}
		select {
		case <-time.After(2 * time.Second):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	h.apply(serviceYAML("payments", b.port) + `---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: 30s}
`)
	c := h.startGrpcJS("checkout")
	eventually(t, 20*time.Second, func() error { return callOK(c, "payments", "", nil) })
	r := c.call("payments", 20*time.Second, "slow", nil)
	require.NoError(t, r.Err(), "under a 30s request timeout the 2s call succeeds")

	h.apply(`apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: 500ms}
`)
	eventually(t, 30*time.Second, func() error {
		r := c.call("payments", 20*time.Second, "slow", nil)
		if codeOf(r.Err()) != codes.DeadlineExceeded {
			return fmt.Errorf("want DeadlineExceeded from the 500ms policy, got %v", r.Err())
		}
		return nil
	})
	require.NoError(t, callOK(c, "payments", "", nil), "fast calls still pass")
	eventually(t, 10*time.Second, func() error {
		p, ok := h.cp.tracker.Proxy(c.node)
		if !ok {
			return fmt.Errorf("grpc-js proxy %s unknown to status", c.node)
		}
		if !p.Converged {
			return fmt.Errorf("grpc-js proxy not converged: %+v", p.Types)
		}
		return nil
	})
}

// Retries hide a backend that fails each request's first attempt with
// UNAVAILABLE; with attempts 0 the same calls fail.
func TestGrpcJSRetries(t *testing.T) {
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
	c := h.startGrpcJS("checkout")
	seq := 0
	fresh := func(prefix string) string { seq++; return fmt.Sprintf("%s-%d", prefix, seq) }
	eventually(t, 20*time.Second, func() error { return c.call("payments", 3*time.Second, fresh("warm"), nil).Err() })
	for i := range 20 {
		before := b.calls.Load()
		r := c.call("payments", 3*time.Second, fresh("retry"), nil)
		require.NoError(t, r.Err(), "call %d should be hidden by a retry", i)
		require.Equal(t, int64(2), b.calls.Load()-before, "call %d: one failed attempt and one retry", i)
	}

	h.apply(`apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  retries: {attempts: 0}
`)
	eventually(t, 20*time.Second, func() error {
		r := c.call("payments", 3*time.Second, fresh("probe"), nil)
		if codeOf(r.Err()) != codes.Unavailable {
			return fmt.Errorf("want Unavailable without retries, got %v", r.Err())
		}
		return nil
	})
	for i := range 10 {
		before := b.calls.Load()
		r := c.call("payments", 3*time.Second, fresh("noretry"), nil)
		require.Equal(t, codes.Unavailable, codeOf(r.Err()), "call %d", i)
		require.Equal(t, int64(1), b.calls.Load()-before, "call %d: a single attempt", i)
	}
}

// When the primary has no healthy host, the fallback service answers.
func TestGrpcJSFallback(t *testing.T) {
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
	c := h.startGrpcJS("checkout")
	eventually(t, 30*time.Second, func() error { return callOK(c, "payments", "static", nil) })
	for range 10 {
		require.NoError(t, callOK(c, "payments", "static", nil))
	}
}

// A live cluster-level change on a service with a fallback reaches grpc-js
// and takes effect: a bulkhead of 1 added to the primary refuses a second
// call while one is in flight. (C-core 1.51 ACKs the same change but keeps
// the previous cluster config; see docs/translation.md.)
func TestGrpcJSFallbackLiveClusterChange(t *testing.T) {
	h := newHarness(t)
	gate := newBlocker()
	defer gate.release()
	var inflight atomic.Int64
	primary := startBackend(t, "primary", func(ctx context.Context, req *testgrpc.SimpleRequest) error {
		if string(req.GetPayload().GetBody()) != "hold" {
			return nil
		}
		inflight.Add(1)
		defer inflight.Add(-1)
		return gate.wait(ctx)
	})
	static := startBackend(t, "static", nil)
	h.apply(serviceYAML("payments", primary.port) + "---\n" + serviceYAML("payments-static", static.port) + `---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  fallback: {service: payments-static}
`)
	c := h.startGrpcJS("checkout")
	eventually(t, 20*time.Second, func() error { return callOK(c, "payments", "primary", nil) })

	h.apply(`apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  fallback: {service: payments-static}
  bulkhead: {maxRequests: 1}
`)
	eventually(t, 20*time.Second, func() error {
		p, _ := h.cp.tracker.Proxy(c.node)
		ts := p.Types["clusters"]
		if ts == nil {
			return fmt.Errorf("no clusters sent")
		}
		if ts.LastNack != nil {
			return fmt.Errorf("clusters NACKed: %+v", ts.LastNack)
		}
		if !p.Converged {
			return fmt.Errorf("grpc-js proxy not converged: %+v", p.Types)
		}
		return nil
	})
	held := c.start("payments", 60*time.Second, "hold", nil)
	eventually(t, 10*time.Second, func() error {
		if n := inflight.Load(); n != 1 {
			return fmt.Errorf("%d calls in flight", n)
		}
		return nil
	})
	// The ACK can come before the client's balancers take the new config.
	eventually(t, 20*time.Second, func() error {
		r := c.call("payments", 3*time.Second, "x", nil)
		if codeOf(r.Err()) != codes.Unavailable {
			return fmt.Errorf("want Unavailable from the new bulkhead, got %v (served by %q)", r.Err(), r.Hostname)
		}
		return nil
	})
	gate.release()
	select {
	case r := <-held:
		require.NoError(t, r.Err(), "the held call completes once released")
		require.Equal(t, "primary", r.Hostname)
	case <-time.After(30 * time.Second):
		t.Fatal("the held call never completed")
	}
	for i := range 5 {
		require.NoError(t, callOK(c, "payments", "primary", nil), "call %d after the change", i)
	}
}

// An experiment that aborts every call fails them with its status, and
// aborted calls never reach the backend; once it is stopped, calls succeed
// again.
//
// grpc-js-xds 1.14 drops the route update that starts such an experiment on
// a client that is already connected: its xDS client compares each update
// with the cached resource by walking only the cached object's keys
// (deepEqual in src/xds-resource-type/xds-resource-type.ts), so a fault
// filter override added to a route whose typed_per_filter_config was empty
// compares equal and is never applied (see docs/translation.md). So the
// client that sees the experiment here is one started while it runs; the
// experiment's end (the override removed) reaches both.
func TestGrpcJSChaosAbort(t *testing.T) {
	h := newHarness(t)
	b := startBackend(t, "ok", nil)
	h.apply(serviceYAML("payments", b.port))
	before := h.startGrpcJS("checkout")
	eventually(t, 20*time.Second, func() error { return callOK(before, "payments", "", nil) })
	p, _ := h.cp.tracker.Proxy(before.node)
	oldRoutes := p.Types["routes"].Acked

	h.apply(`apiVersion: bulwark/v1
kind: ChaosExperiment
metadata: {name: payments-exhausted}
spec:
  target: {service: payments}
  abort: {percent: 100, grpcStatus: 8}
  duration: 10m
  hypothesis: callers degrade gracefully
`)
	// Bulwark's part for the connected client: the new routes are sent and
	// ACKed.
	eventually(t, 10*time.Second, func() error {
		p, _ := h.cp.tracker.Proxy(before.node)
		ts := p.Types["routes"]
		if ts.LastNack != nil {
			return fmt.Errorf("routes NACKed: %+v", ts.LastNack)
		}
		if ts.Acked == oldRoutes || ts.Acked != ts.Sent {
			return fmt.Errorf("routes sent %s, acked %s (was %s)", ts.Sent, ts.Acked, oldRoutes)
		}
		return nil
	})
	during := h.startGrpcJS("checkout")
	eventually(t, 10*time.Second, func() error {
		r := during.call("payments", 3*time.Second, "x", nil)
		if codeOf(r.Err()) != codes.ResourceExhausted {
			return fmt.Errorf("want ResourceExhausted from the experiment, got %v", r.Err())
		}
		return nil
	})
	served := b.calls.Load()
	for i := range 5 {
		r := during.call("payments", 3*time.Second, "x", nil)
		require.Equal(t, codes.ResourceExhausted, codeOf(r.Err()), "call %d during the experiment", i)
	}
	require.Equal(t, served, b.calls.Load(), "aborted calls never reach the backend")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, h.store.StopExperiment(ctx, "payments-exhausted", "test"))
	eventually(t, 20*time.Second, func() error { return callOK(during, "payments", "", nil) })
	for range 5 {
		require.NoError(t, callOK(during, "payments", "", nil))
		require.NoError(t, callOK(before, "payments", "", nil))
	}
}

// A header-scoped experiment aborts only the calls that carry its header;
// untagged calls and calls with another value pass, and no route
// configuration is NACKed.
func TestGrpcJSChaosAbortWithHeaders(t *testing.T) {
	h := newHarness(t)
	b := startBackend(t, "ok", nil)
	h.apply(serviceYAML("payments", b.port))
	c := h.startGrpcJS("checkout")
	eventually(t, 20*time.Second, func() error { return callOK(c, "payments", "", nil) })

	tagged := map[string]string{"x-chaos": "on"}
	h.apply(`apiVersion: bulwark/v1
kind: ChaosExperiment
metadata: {name: payments-tagged}
spec:
  target: {service: payments}
  headers: {x-chaos: "on"}
  abort: {percent: 100, grpcStatus: 8}
  duration: 10m
  hypothesis: tagged callers degrade gracefully
`)
	eventually(t, 15*time.Second, func() error {
		r := c.call("payments", 3*time.Second, "x", tagged)
		if codeOf(r.Err()) != codes.ResourceExhausted {
			return fmt.Errorf("want ResourceExhausted for a tagged call, got %v", r.Err())
		}
		return nil
	})
	for i := range 10 {
		r := c.call("payments", 3*time.Second, "x", tagged)
		require.Equal(t, codes.ResourceExhausted, codeOf(r.Err()), "tagged call %d", i)
		require.NoError(t, callOK(c, "payments", "", nil), "untagged call %d", i)
		require.NoError(t, callOK(c, "payments", "", map[string]string{"x-chaos": "off"}), "call %d with another header value", i)
	}
	p, ok := h.cp.tracker.Proxy(c.node)
	require.True(t, ok)
	if ts := p.Types["routes"]; ts != nil && ts.LastNack != nil {
		t.Fatalf("the grpc-js client rejected routes: %+v", ts.LastNack)
	}
}
