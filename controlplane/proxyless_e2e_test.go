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

// Scenarios that every proxyless client beside gRPC-Go's passes in the same
// way: gRPC C-core (Python) and grpc-js (Node.js).

// startClient starts a proxyless client of a source service.
type startClient func(h *harness, source string) *lineClient

// proxylessClients are the clients the scenarios run with.
var proxylessClients = []struct {
	name  string
	start startClient
}{
	{"C-core", func(h *harness, source string) *lineClient { return h.startCCore(source) }},
	{"grpc-js", func(h *harness, source string) *lineClient { return h.startGrpcJS(source) }},
}

// forEachClient runs a scenario as a subtest per client.
func forEachClient(t *testing.T, scenario func(t *testing.T, start startClient)) {
	for _, c := range proxylessClients {
		t.Run(c.name, func(t *testing.T) { scenario(t, c.start) })
	}
}

// Of three backends, the one that always fails is ejected by failure-
// percentage outlier detection and then gets no traffic.
func TestProxylessCircuitBreakerEjects(t *testing.T) {
	forEachClient(t, func(t *testing.T, start startClient) {
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
		c := start(h, "checkout")
		// Round robin uses only connected backends: wait until all three answered.
		seen := map[string]bool{}
		eventually(t, 20*time.Second, func() error {
			if r := c.call("payments", 3*time.Second, "x", nil); r.Err() == nil {
				seen[r.Hostname] = true
			}
			if bad.calls.Load() > 0 {
				seen["bad"] = true
			}
			if len(seen) < 3 {
				return fmt.Errorf("backends seen: %v", seen)
			}
			return nil
		})
		eventually(t, 30*time.Second, func() error {
			before := bad.calls.Load()
			for range 30 {
				c.call("payments", 3*time.Second, "x", nil)
			}
			if n := bad.calls.Load() - before; n > 0 {
				return fmt.Errorf("bad backend still got %d of 30 calls", n)
			}
			return nil
		})
		before := bad.calls.Load()
		g1, g2 := good1.calls.Load(), good2.calls.Load()
		for i := range 60 {
			require.NoError(t, c.call("payments", 3*time.Second, "x", nil).Err(), "call %d after ejection", i)
		}
		require.Equal(t, before, bad.calls.Load(), "an ejected backend must get no traffic")
		require.Positive(t, good1.calls.Load()-g1, "good1 keeps serving")
		require.Positive(t, good2.calls.Load()-g2, "good2 keeps serving")
	})
}

// With maxRequests 2, a third call while two are in flight fails fast with
// UNAVAILABLE, and calls pass again once the two end.
func TestProxylessBulkhead(t *testing.T) {
	forEachClient(t, func(t *testing.T, start startClient) {
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
		c := start(h, "checkout")
		eventually(t, 20*time.Second, func() error { return c.call("payments", 3*time.Second, "x", nil).Err() })
		held := []<-chan clientResult{
			c.start("payments", 60*time.Second, "hold", nil),
			c.start("payments", 60*time.Second, "hold", nil),
		}
		eventually(t, 10*time.Second, func() error {
			if n := inflight.Load(); n != 2 {
				return fmt.Errorf("%d calls in flight", n)
			}
			return nil
		})
		before := b.calls.Load()
		r := c.call("payments", 30*time.Second, "third", nil)
		require.Equal(t, codes.Unavailable, codeOf(r.Err()), "a third call must be refused by the bulkhead, got %v", r.Err())
		require.Equal(t, before, b.calls.Load(), "the refused call never reached the backend")
		gate.release()
		for _, ch := range held {
			select {
			case r := <-ch:
				require.NoError(t, r.Err(), "held calls complete once released")
			case <-time.After(30 * time.Second):
				t.Fatal("a held call never completed")
			}
		}
		require.NoError(t, c.call("payments", 3*time.Second, "after", nil).Err(), "calls pass again once the pool drains")
	})
}
