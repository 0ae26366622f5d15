package controlplane

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// Readiness fails, with the reason, while a build or publication does not
// finish (no proxy would get config again), and holds again once it does.
func TestReadinessFailsWhilePublishingIsStuck(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.PublishStuckAfter = 500 * time.Millisecond })
	b := startBackend(t, "ok", nil)
	h.apply(serviceYAML("payments", b.port))
	c, node := h.dial("checkout", "payments")
	eventually(t, 20*time.Second, func() error {
		if _, err := call(c, time.Second, "x"); err != nil {
			return err
		}
		if _, ok := h.cp.tracker.Proxy(node); !ok {
			return fmt.Errorf("proxy %s not connected", node)
		}
		return nil
	})

	stuck := newBlocker()
	defer stuck.release()
	h.cp.builder.SetMutate(func(xdsserver.GroupKey, *translate.Resources) { <-stuck.ch })
	defer h.cp.builder.SetMutate(nil)
	h.apply(serviceYAML("payments", b.port, 9002))
	eventually(t, 20*time.Second, func() error {
		code, body := h.get("/health/ready")
		var r api.Readiness
		require.NoError(t, json.Unmarshal(body, &r))
		if code != http.StatusServiceUnavailable || !strings.Contains(strings.Join(r.Reasons, ";"), "publishing is stuck") {
			return fmt.Errorf("ready answers %d %v", code, r.Reasons)
		}
		return nil
	})
	stuck.release()
	h.waitReady()
}
