package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdsgrpc "google.golang.org/grpc/xds"

	"github.com/bulwarkmesh/bulwark/controlplane"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

// server is a real control plane over an embedded etcd for the CLI to talk to.
type server struct {
	cp  *controlplane.ControlPlane
	etc interface{ Close() }
	url string
}

func startServer(t *testing.T, tune ...func(*controlplane.Config)) *server {
	t.Helper()
	etcd := storetest.NewServer(t)
	cfg := controlplane.Config{
		XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", EtcdEndpoints: etcd.Endpoints(), Replica: "cli-test",
		Debounce: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond, StoreGrace: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, f := range tune {
		f(&cfg)
	}
	cp, err := controlplane.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, cp.Start(ctx))
	t.Cleanup(func() { cancel(); cp.Stop() })
	s := &server{cp: cp, etc: etcd, url: "http://" + cp.AdminAddr()}
	if cfg.TLSCert != "" {
		return s // the caller waits over https
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get(s.url + "/health/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 15*time.Second, 20*time.Millisecond)
	return s
}

// ctl runs the built bulwarkctl against s.
func (s *server) ctl(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	return bulwarkctl(t, stdin, append([]string{"--server", s.url}, args...)...)
}

// bulwarkctlEnv runs the built binary with extra environment variables.
func bulwarkctlEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BULWARK_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	err := cmd.Run()
	code := 0
	if err != nil {
		exitErr, ok := err.(*exec.ExitError)
		require.True(t, ok, "running bulwarkctl: %v", err)
		code = exitErr.ExitCode()
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func writeTestFile(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
}

const (
	cliService = `apiVersion: bulwark/v1
kind: Service
metadata: {name: payments, labels: {tier: critical}}
spec:
  protocol: grpc
  port: 50051
  endpoints: [{address: 127.0.0.1, port: 9001}]
`
	cliPolicy = `apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: 3s}
  retries: {attempts: 2, methods: [GET], budget: {percent: 20}}
`
	cliExperiment = `apiVersion: bulwark/v1
kind: ChaosExperiment
metadata: {name: payments-503}
spec:
  target: {service: payments}
  abort: {percent: 10, grpcStatus: 14}
  duration: 10m
`
)

// lineWith returns the first line of out containing every part.
func lineWith(t *testing.T, out string, parts ...string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return l
		}
	}
	t.Fatalf("no line with %q in:\n%s", parts, out)
	return ""
}

// apply, get, diff, prune and delete, as a user would run them.
func TestServerApplyGetDiffDelete(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	writeTestFile(t, dir, "services.yaml", cliService)
	writeTestFile(t, dir, "policies/payments.yaml", cliPolicy)

	r := s.ctl(t, "", "apply", "-f", dir, "--source", "ci")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Regexp(t, `(?m)^created\s+Service\s+payments$`, r.stdout)
	require.Regexp(t, `(?m)^created\s+ResiliencePolicy\s+payments$`, r.stdout)
	require.Contains(t, r.stdout, "applied at revision")
	require.Contains(t, r.stdout, "2 created, 0 updated, 0 deleted, 0 unchanged")

	// get: an aligned table, YAML and JSON; kinds by any name.
	r = s.ctl(t, "", "get", "services")
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2)
	require.Regexp(t, `^NAME\s+PROTOCOL\s+PORT\s+ENDPOINTS\s+DEPENDENCIES\s+SOURCE\s+REVISION$`, lines[0])
	require.Regexp(t, `^payments\s+grpc\s+50051\s+1\s+\*\s+ci\s+\d+$`, lines[1])
	require.Equal(t, strings.Index(lines[0], "PORT"), strings.Index(lines[1], "50051"), "columns are aligned")
	for _, kind := range []string{"policy", "policies", "ResiliencePolicy", "resiliencepolicies"} {
		r = s.ctl(t, "", "get", kind, "-o", "table")
		require.Equal(t, exitOK, r.code, "%s: %s", kind, r.stderr)
		require.Regexp(t, `(?m)^payments\s+payments\s+-\s+timeouts,retries\s+ci\s+\d+$`, r.stdout, kind)
	}
	r = s.ctl(t, "", "get", "policy", "payments", "-o", "yaml")
	require.Equal(t, exitOK, r.code, r.stderr)
	got, err := policies.DecodeStored([]byte(r.stdout))
	require.NoError(t, err, r.stdout)
	require.Equal(t, "3s", got.(*policies.ResiliencePolicy).Spec.Timeouts.Request.String())
	require.Positive(t, got.GetMeta().Revision)
	r = s.ctl(t, "", "get", "svc", "payments", "-o", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, `"name": "payments"`)
	r = s.ctl(t, "", "-o", "json", "get", "experiments")
	require.Equal(t, exitUsage, r.code, "-o is a flag of get, not a global one")
	r = s.ctl(t, "", "get", "experiments")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, "no experiments\n", r.stdout)

	// diff: nothing, then a unified diff of the edit.
	r = s.ctl(t, "", "diff", "-f", dir)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "no differences")
	writeTestFile(t, dir, "policies/payments.yaml", strings.Replace(cliPolicy, "request: 3s", "request: 2s", 1))
	r = s.ctl(t, "", "diff", "-f", dir)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "--- server/ResiliencePolicy/payments\n+++ files/ResiliencePolicy/payments\n@@ ")
	require.Contains(t, r.stdout, "\n-    request: 3s\n+    request: 2s\n")
	require.NotContains(t, r.stdout, "Service/payments", "an unchanged resource shows no diff")
	r = s.ctl(t, "", "diff", "-f", dir, "--exit-code")
	require.Equal(t, exitFailed, r.code)

	// A dry run changes nothing.
	r = s.ctl(t, "", "apply", "-f", dir, "--source", "ci", "--dry-run")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Regexp(t, `(?m)^updated\s+ResiliencePolicy\s+payments$`, r.stdout)
	require.Contains(t, r.stdout, "dry run, nothing written: 0 created, 1 updated, 0 deleted, 1 unchanged")
	r = s.ctl(t, "", "get", "policy", "payments", "-o", "yaml")
	require.Contains(t, r.stdout, "request: 3s")

	// Prune: the removed file's policy goes, shown first by diff.
	require.NoError(t, os.Remove(filepath.Join(dir, "policies/payments.yaml")))
	r = s.ctl(t, "", "diff", "-f", dir, "--prune", "--source", "ci")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "--- server/ResiliencePolicy/payments\n+++ /dev/null\n")
	// Without a terminal to ask, --prune shows what it would delete and
	// refuses without --yes.
	r = s.ctl(t, "", "apply", "-f", dir, "--prune", "--source", "ci")
	require.Equal(t, exitFailed, r.code, r.stderr)
	require.Contains(t, r.stderr, "--prune will delete 1 resource:\n  ResiliencePolicy payments\n")
	require.Contains(t, r.stderr, "stdin is not a terminal: run again with --yes")
	require.Contains(t, s.ctl(t, "", "get", "policies").stdout, "payments")
	r = s.ctl(t, "", "apply", "-f", dir, "--prune", "--source", "ci", "--yes", "-o", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, `"action": "deleted"`)
	// Nothing left to delete: no confirmation needed.
	r = s.ctl(t, "", "apply", "-f", dir, "--prune", "--source", "ci")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = s.ctl(t, "", "get", "policies")
	require.Equal(t, "no policies\n", r.stdout)

	// apply from stdin, then delete.
	r = s.ctl(t, cliPolicy, "apply", "-f", "-")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = s.ctl(t, "", "delete", "policy", "payments")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Regexp(t, `^deleted ResiliencePolicy payments at revision \d+\n$`, r.stdout)
	r = s.ctl(t, "", "get", "policy", "payments")
	require.Equal(t, exitFailed, r.code)
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %s", r.stderr)
	require.Contains(t, r.stderr, "not found")
}

// Failures print one actionable line each and exit 1 (refused), 2 (usage)
// or 3 (unreachable); the server and the token come from flags or the
// environment.
func TestServerErrorsAndExitCodes(t *testing.T) {
	s := startServer(t, func(c *controlplane.Config) {
		c.TokenFile = filepath.Join(t.TempDir(), "tokens")
		require.NoError(t, os.WriteFile(c.TokenFile, []byte("viewer-token-0123456789 viewer\neditor-token-0123456789 editor ci\n"), 0o600))
	})
	dir := t.TempDir()
	writeTestFile(t, dir, "mesh.yaml", cliService+"---\n"+cliPolicy)

	r := bulwarkctl(t, "", "--server", "http://127.0.0.1:1", "get", "services")
	require.Equal(t, exitUnreachable, r.code)
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), r.stderr)
	require.Contains(t, r.stderr, "cannot reach the server at http://127.0.0.1:1")

	r = s.ctl(t, "", "get", "services")
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "--token or BULWARK_TOKEN")
	r = s.ctl(t, "", "--token", "viewer-token-0123456789", "apply", "-f", dir)
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "has the role viewer")

	editorEnv := []string{"BULWARK_SERVER=" + s.url, "BULWARK_TOKEN=editor-token-0123456789"}
	r = bulwarkctlEnv(t, editorEnv, "apply", "-f", dir)
	require.Equal(t, exitOK, r.code, r.stderr)
	r = bulwarkctlEnv(t, []string{"BULWARK_SERVER=" + s.url, "BULWARK_TOKEN=viewer-token-0123456789"}, "get", "services")
	require.Equal(t, exitOK, r.code, r.stderr)

	// A conflicting policy: refused, naming the other one.
	rival := strings.Replace(strings.Replace(cliPolicy, "name: payments}", "name: payments-fast}", 1), "request: 3s", "request: 1s", 1)
	rival = strings.Replace(rival, "  retries: {attempts: 2, methods: [GET], budget: {percent: 20}}\n", "", 1)
	r = bulwarkctlEnv(t, editorEnv, "apply", "-f", "-")
	require.Equal(t, exitFailed, r.code, "empty stdin")
	cmd := exec.Command(binary, "apply", "-f", "-")
	cmd.Env = append(os.Environ(), editorEnv...)
	cmd.Stdin = strings.NewReader(rival)
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Equal(t, exitFailed, cmd.ProcessState.ExitCode())
	require.Contains(t, string(out), "payments and payments-fast")

	// An invalid file is refused before anything is sent, naming file,
	// document and field.
	writeTestFile(t, dir, "broken.yaml", strings.Replace(cliPolicy, "attempts: 2", "atempts: 2", 1))
	r = bulwarkctlEnv(t, editorEnv, "apply", "-f", dir)
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "broken.yaml: document 0 (ResiliencePolicy payments): spec.retries.atempts: unknown field")

	// The server's guardrails: refused with the field.
	wide := strings.Replace(cliExperiment, "percent: 10", "percent: 90", 1)
	cmd = exec.Command(binary, "chaos", "start", "-f", "-")
	cmd.Env = append(os.Environ(), editorEnv...)
	cmd.Stdin = strings.NewReader(wide)
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	require.Equal(t, exitFailed, cmd.ProcessState.ExitCode())
	require.Contains(t, string(out), "bulwarkctl chaos start: spec.abort.percent:")

	for _, args := range [][]string{
		{"apply"}, {"apply", "-f", dir, "--prune"}, {"get"}, {"get", "gadgets"}, {"get", "policy", "a", "b"},
		{"delete", "policy"}, {"get", "services", "-o", "xml"}, {"config"}, {"chaos"}, {"chaos", "explode"}, {"chaos", "start"},
	} {
		r = bulwarkctlEnv(t, editorEnv, args...)
		require.Equal(t, exitUsage, r.code, "%v: %s", args, r.stderr)
		require.NotEmpty(t, r.stderr, args)
	}

	// With the store gone, the server answers 503: exit 3.
	s.etc.Close()
	r = bulwarkctlEnv(t, editorEnv, "get", "services")
	require.Equal(t, exitUnreachable, r.code, r.stderr)
	require.Contains(t, r.stderr, "store (etcd) is unreachable")
}

// chaos, status, proxies, config and audit against a server with a real
// gRPC xDS client connected.
func TestServerChaosStatusProxiesConfigAudit(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	writeTestFile(t, dir, "mesh.yaml", cliService+"---\n"+cliPolicy)
	require.Equal(t, exitOK, s.ctl(t, "", "apply", "-f", dir).code)

	nodeID := connectXDSClient(t, s.cp.XDSAddr(), "checkout", "payments")
	// Listed, and its group built from the applied mesh (a proxy that
	// connects right after the apply may first get a build from before it).
	require.Eventually(t, func() bool {
		r := s.ctl(t, "", "proxies")
		return r.code == exitOK && strings.Contains(r.stdout, nodeID) &&
			strings.Contains(s.ctl(t, "", "config", nodeID).stdout, "payments")
	}, 15*time.Second, 100*time.Millisecond)
	r := s.ctl(t, "", "proxies")
	require.Regexp(t, `^ID\s+SERVICE\s+FLAVOR\s+REPLICA\s+PROTOCOL\s+REVISION\s+CONVERGED\s+LAST-NACK\n`, r.stdout)
	require.Contains(t, lineWith(t, r.stdout, nodeID), "checkout")
	require.Contains(t, lineWith(t, r.stdout, nodeID), "grpc")

	r = s.ctl(t, "", "status")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Regexp(t, `(?m)^revision:\s+\d+$`, r.stdout)
	require.Regexp(t, `(?m)^ready:\s+yes$`, r.stdout)
	require.Regexp(t, `(?m)^proxies:\s+1: `, r.stdout)

	r = s.ctl(t, "", "config", nodeID)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, `"listeners"`)
	require.Contains(t, r.stdout, "payments")
	r = s.ctl(t, "", "config", "--service", "checkout", "--flavor", "envoy")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "15001")
	r = s.ctl(t, "", "config", "nobody")
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "no connected proxy with id nobody")

	// chaos
	chaosFile := filepath.Join(t.TempDir(), "chaos.yaml")
	require.NoError(t, os.WriteFile(chaosFile, []byte(cliExperiment), 0o644))
	r = s.ctl(t, "", "chaos", "start", "-f", chaosFile)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Regexp(t, `^started payments-503 on payments \(abort 10% grpc 14\) until \S+\n$`, r.stdout)
	r = s.ctl(t, "", "chaos", "list")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Regexp(t, `(?m)^payments-503\s+payments\s+abort 10% grpc 14\s+10m\s+\S+\s+anonymous\s+\d+$`, r.stdout)
	r = s.ctl(t, "", "chaos", "start", "-f", filepath.Join(dir, "mesh.yaml"))
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "ChaosExperiments only")
	r = s.ctl(t, "", "chaos", "stop")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, "stopped payments-503\n", r.stdout)
	r = s.ctl(t, "", "chaos", "stop")
	require.Equal(t, "no experiment was running\n", r.stdout)
	r = s.ctl(t, "", "chaos", "list", "--history")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, lineWith(t, r.stdout, "payments-503"), "stopped")
	require.Equal(t, exitOK, s.ctl(t, "", "chaos", "start", "-f", chaosFile).code)
	r = s.ctl(t, "", "chaos", "stop", "payments-503")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, "stopped payments-503\n", r.stdout)

	// audit
	r = s.ctl(t, "", "audit")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Regexp(t, `(?m)^SERVICE\s+CHECK\s+STATUS\s+PROVIDED-BY\s+DETAIL$`, r.stdout)
	require.Regexp(t, `(?m)^payments\s+timeouts\s+ok\s+payments\s+request timeout 3s$`, r.stdout)
	require.Regexp(t, `(?m)^payments\s+circuitBreaker\s+missing\s+-\s+`, r.stdout)
	require.Regexp(t, `(?m)^payments\s+chaos\s+ok\s+payments-503\s+`, r.stdout)
	require.Contains(t, r.stdout, "To do:\n  payments circuitBreaker: add circuitBreaker")
	r = s.ctl(t, "", "audit", "--service", "payments", "-o", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, `"item": "bulkhead"`)
	r = s.ctl(t, "", "audit", "--service", "nowhere")
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "nowhere")
}

// connectXDSClient connects gRPC's xDS client, as a proxy of service
// source, to xds:///target and returns its node id.
func connectXDSClient(t *testing.T, xdsAddr, source, target string) string {
	t.Helper()
	nodeID := source + "-cli-test"
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "cluster": %q, "locality": {"zone": "z1"}}
	}`, xdsAddr, nodeID, source)
	res, err := xdsgrpc.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	require.NoError(t, err)
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(res))
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	cc.Connect()
	return nodeID
}
