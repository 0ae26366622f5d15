package controlplane

import (
	"fmt"
	"testing"
	"time"
)

// End-to-end scenarios with gRPC C-core (Python grpcio) as the proxyless
// client, beside gRPC-Go's in e2e_test.go. C-core 1.51 fires route deadlines
// up to about 1.5 s early, so every timeout here is 3 s or more.

// Each service routes to its own backends, and a client reaches them by name.
func TestCCoreRouting(t *testing.T) {
	h := newHarness(t)
	pay := startBackend(t, "payments-1", nil)
	inv := startBackend(t, "inventory-1", nil)
	h.apply(serviceYAML("payments", pay.port) + "---\n" + serviceYAML("inventory", inv.port))
	c := h.startCCore("checkout")
	for target, want := range map[string]string{"payments": "payments-1", "inventory": "inventory-1"} {
		eventually(t, 20*time.Second, func() error {
			r := c.call(target, 3*time.Second, "x", nil)
			if err := r.Err(); err != nil {
				return err
			}
			if r.Hostname != want {
				return fmt.Errorf("%s served by %q, want %q", target, r.Hostname, want)
			}
			return nil
		})
	}
}
