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

// history shows who wrote what, newest first; version shows the client's
// and the server's build.
func TestHistoryAndVersion(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	writeTestFile(t, dir, "mesh.yaml", cliService)
	require.Equal(t, exitOK, s.ctl(t, "", "apply", "-f", dir, "--source", "ci").code)
	require.Equal(t, exitOK, s.ctl(t, "", "delete", "service", "payments").code)

	r := s.ctl(t, "", "history")
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 3, r.stdout)
	require.Regexp(t, `^REVISION\s+TIME\s+WHO\s+OPERATION\s+ACTION\s+KIND\s+NAME\s+BEFORE\s+AFTER$`, lines[0])
	require.Regexp(t, `^\d+\s+\S+ \S+\s+anonymous\s+delete\s+deleted\s+Service\s+payments\s+\d+\s+-$`, lines[1])
	require.Regexp(t, `^\d+\s+\S+ \S+\s+anonymous\s+apply --source ci\s+created\s+Service\s+payments\s+-\s+\d+$`, lines[2])
	require.Len(t, strings.Split(strings.TrimSpace(s.ctl(t, "", "history", "--limit", "1").stdout), "\n"), 2)

	r = s.ctl(t, "", "version")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Regexp(t, `^client: bulwarkctl \S+ \(.*go1\.\d+.*\)\nserver: bulwark \S+ \(.*\) at http://`, r.stdout)
	r = bulwarkctl(t, "", "--server", "http://127.0.0.1:1", "--version")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "server: unknown (cannot reach the server")
}

// render --experiments running shows what the server serves: an experiment
// of the files that no longer runs there (it ended, or was stopped) is left
// out, and said so; --experiments none leaves every one out.
func TestRenderLeavesOutEndedExperiments(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	writeTestFile(t, dir, "mesh.yaml", cliService+"---\n"+cliPolicy+"---\n"+cliExperiment)
	hasFault := func(args ...string) (bool, result) {
		r := s.ctl(t, "", append([]string{"render", "-f", dir, "--service", "checkout", "-o", "json"}, args...)...)
		require.Equal(t, exitOK, r.code, r.stderr)
		return strings.Contains(r.stdout, `"grpc_status": 14`), r
	}
	on, _ := hasFault()
	require.True(t, on, "by default, as if just applied")
	on, _ = hasFault("--experiments", "none")
	require.False(t, on)

	require.Equal(t, exitOK, s.ctl(t, "", "apply", "-f", dir).code)
	on, r := hasFault("--experiments", "running")
	require.True(t, on, r.stderr)
	require.NotContains(t, r.stderr, "left out")

	require.Equal(t, exitOK, s.ctl(t, "", "chaos", "stop").code)
	on, r = hasFault("--experiments", "running")
	require.False(t, on)
	require.Contains(t, r.stderr, "left out experiment payments-503: not running on the server")

	require.Equal(t, exitUsage, s.ctl(t, "", "render", "-f", dir, "--service", "checkout", "--experiments", "some").code)
}
