package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runCLI runs a subcommand in process against the demo's control endpoint.
func runCLI(t *testing.T, d *demo, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append(args, "--control", "http://"+d.controlLn.Addr().String())
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// The subcommands drive a running demo: upstream changes an instance or a
// whole service and says what it did, stats prints the readout, wait
// returns once a number crosses its threshold and fails with the readout
// when it does not in time.
func TestSubcommands(t *testing.T) {
	d := startTestDemo(t)

	code, out, errOut := runCLI(t, d, "wait", "payments", "success", "above", "99")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `^payments success is 100\.0%, above 99\n$`, out)

	code, out, _ = runCLI(t, d, "upstream", "payments-2", "--errors", "100", "--latency", "20ms")
	require.Equal(t, 0, code)
	require.Equal(t, "payments-2: latency 20ms, errors 100%\n", out)
	code, out, _ = runCLI(t, d, "upstream", "inventory", "--down")
	require.Equal(t, 0, code)
	require.Equal(t, "inventory-1: down\ninventory-2: down\n", out)

	code, out, _ = runCLI(t, d, "stats", "-o", "json")
	require.Equal(t, 0, code)
	var s Stats
	require.NoError(t, json.Unmarshal([]byte(out), &s))
	require.Len(t, s.Callers, 2)
	require.Len(t, s.Upstreams, len(meshUpstreams))
	require.Equal(t, Behaviour{Latency: 20 * time.Millisecond, Errors: 100}, s.Upstreams[1].State)
	code, out, _ = runCLI(t, d, "stats")
	require.Equal(t, 0, code)
	require.Contains(t, out, "CALLS TO")
	require.Contains(t, out, "Policies: none. Experiments: none.")
	applyFile(t, d, "timeout.yaml")
	applyFile(t, d, "retries.yaml")
	_, out, _ = runCLI(t, d, "stats")
	require.Contains(t, out, "Policies: payments-retries, payments-timeout. Experiments: none.", "the readout says what is in force")
	require.Regexp(t, `inventory-2 +inventory +grpc://127\.0\.0\.1:\d+ +down`, out)

	code, out, _ = runCLI(t, d, "wait", "inventory", "success", "below", "1")
	require.Equal(t, 0, code)
	require.Equal(t, "inventory success is 0.0%, below 1\n", out)
	code, _, errOut = runCLI(t, d, "wait", "inventory", "success", "above", "99", "--timeout", "1s")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "inventory success is 0.0% after 1s, not above 99")
	require.Contains(t, errOut, "CALLS TO", "a failed wait shows the readout")

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"upstream", "nosuch", "--down"}, 1, "no upstream or service nosuch: one of payments-1"},
		{[]string{"upstream", "payments-1", "--errors", "150"}, 1, "errors: want a percentage between 0 and 100, got 150"},
		{[]string{"upstream", "payments-1"}, 2, "nothing to change"},
		{[]string{"upstream", "payments-1", "--down", "--up"}, 2, "contradict"},
		{[]string{"wait", "payments", "p99", "below", "fast"}, 2, "p99: want a duration such as 400ms"},
		{[]string{"wait", "payments", "latency", "below", "1s"}, 2, `unknown metric "latency"`},
		{[]string{"wait", "payments-1", "p99", "below", "1s"}, 1, "payments-1 has no p99: upstreams have rps only"},
		{[]string{"wait", "nosuch", "rps", "below", "1"}, 1, `no caller or upstream "nosuch"`},
		{[]string{"nosuch"}, 2, `unknown command "nosuch"`},
	} {
		code, _, errOut := runCLI(t, d, tc.args...)
		require.Equal(t, tc.code, code, "%v: %s", tc.args, errOut)
		require.Contains(t, errOut, tc.msg, "%v", tc.args)
	}
	// A failed change moved nothing.
	require.Equal(t, Behaviour{}, d.upstreams[0].behaviour())
}

// Without a running demo the subcommands say so and exit 3.
func TestSubcommandsWithoutDemo(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	free := l.Addr().String()
	l.Close()
	var stdout, stderr bytes.Buffer
	require.Equal(t, 3, run([]string{"stats", "--control", "http://" + free}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "the demo is not running at http://"+free+" (start it with make demo)")
	stderr.Reset()
	require.Equal(t, 3, run([]string{"wait", "payments", "rps", "above", "1", "--timeout", "500ms", "--control", "http://" + free}, &stdout, &stderr))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// SIGTERM stops the demo started by the command line: it exits 0 and every
// port it listened on is free again. (The bootstrap variable is set to the
// demo's own file, so the command does not run itself again.)
func TestSIGTERMStopsTheDemo(t *testing.T) {
	dir := t.TempDir()
	boot, err := filepath.Abs(filepath.Join(dir, "grpc-bootstrap.json"))
	require.NoError(t, err)
	t.Setenv("GRPC_XDS_BOOTSTRAP", boot)
	addrs := map[string]string{}
	for _, f := range []string{"xds-addr", "admin-addr", "embedded-etcd-listen", "embedded-etcd-peer", "control-addr"} {
		addrs[f] = freeAddr(t)
	}
	args := []string{"--data-dir", dir, "--upstream-port", "0", "--rate", "10"}
	for f, a := range addrs {
		args = append(args, "--"+f, a)
	}
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() { done <- run(args, &stdout, &stderr) }()
	require.Eventually(t, func() bool {
		return strings.Contains(stdout.String(), "Ctrl-C stops the demo")
	}, 60*time.Second, 50*time.Millisecond, "never started: %s", stderr.String())
	require.FileExists(t, filepath.Join(dir, "envoy-bootstrap.yaml"))

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case code := <-done:
		require.Equal(t, 0, code, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("the demo did not stop within 30s of SIGTERM")
	}
	require.Contains(t, stdout.String(), "bulwark-demo: stopped")
	for f, a := range addrs {
		l, err := net.Listen("tcp", a)
		require.NoError(t, err, "--%s %s is still taken", f, a)
		l.Close()
	}
}

// lockedBuffer is a bytes.Buffer that the demo writes while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A taken port stops the start with an error that names it and a hint,
// and what had started is stopped again: the other ports are free.
func TestBusyPortFailsCleanly(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	dir := t.TempDir()
	boot, err := filepath.Abs(filepath.Join(dir, "grpc-bootstrap.json"))
	require.NoError(t, err)
	t.Setenv("GRPC_XDS_BOOTSTRAP", boot)
	xdsAddr, adminAddr := freeAddr(t), freeAddr(t)
	var stdout, stderr bytes.Buffer
	code := run([]string{"--data-dir", dir, "--upstream-port", "0", "--xds-addr", xdsAddr, "--admin-addr", adminAddr,
		"--embedded-etcd-listen", freeAddr(t), "--embedded-etcd-peer", freeAddr(t), "--control-addr", taken.Addr().String()}, &stdout, &stderr)
	require.Equal(t, 1, code)
	require.Contains(t, stderr.String(), "--control-addr: listen tcp "+taken.Addr().String())
	require.Contains(t, stderr.String(), "is another demo running")
	for _, a := range []string{xdsAddr, adminAddr} {
		l, err := net.Listen("tcp", a)
		require.NoError(t, err, "%s is still taken after the failed start", a)
		l.Close()
	}
}
