package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane"
)

// status exits 1 while the directory sync fails, and 0 again once the
// directory is fixed.
func TestStatusExitsNonZeroWhileSyncFails(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, dir, "mesh.yaml", cliService)
	s := startServer(t, func(c *controlplane.Config) { c.SyncDir = dir })
	require.Eventually(t, func() bool { return s.ctl(t, "", "status").code == exitOK }, 15*time.Second, 50*time.Millisecond)

	writeTestFile(t, dir, "zz-broken.yaml", "kind: [\n")
	var r result
	require.Eventually(t, func() bool {
		r = s.ctl(t, "", "status")
		return strings.Contains(r.stdout, "FAILING")
	}, 15*time.Second, 50*time.Millisecond)
	require.Equal(t, exitFailed, r.code, r.stdout)
	require.Equal(t, exitFailed, s.ctl(t, "", "status", "-o", "json").code)

	require.NoError(t, os.Remove(filepath.Join(dir, "zz-broken.yaml")))
	require.Eventually(t, func() bool { return s.ctl(t, "", "status").code == exitOK }, 15*time.Second, 50*time.Millisecond)
}

// Deleting a service that a policy still names as its fallback succeeds but
// exits 1 with the error finding: a script must not carry on as if all were
// well.
func TestDeleteReferencedFallbackExitsNonZero(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	writeTestFile(t, dir, "mesh.yaml", cliService+`---
apiVersion: bulwark/v1
kind: Service
metadata: {name: payments-static}
spec: {port: 8080}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: 3s}
  fallback: {service: payments-static}
`)
	require.Equal(t, exitOK, s.ctl(t, "", "apply", "-f", dir).code)

	r := s.ctl(t, "", "delete", "service", "payments-static")
	require.Equal(t, exitFailed, r.code, r.stdout+r.stderr)
	require.Contains(t, r.stdout, "deleted Service payments-static")
	require.Contains(t, r.stderr, `error: ResiliencePolicy payments: spec.fallback.service: fallback service "payments-static" does not exist`)

	// A deletion that leaves nothing dangling exits 0.
	require.Equal(t, exitOK, s.ctl(t, "", "delete", "policy", "payments").code)
}
