package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// The binary starts with its embedded etcd, syncs a directory, becomes ready
// and stops gracefully on SIGTERM.
func TestBinaryStartsReadyAndStopsOnSIGTERM(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bulwark")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	require.NoError(t, build.Run())

	admin := freePort(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin,
		"--data-dir", t.TempDir(),
		"--xds-addr", freePort(t), "--admin-addr", admin,
		"--embedded-etcd-listen", freePort(t), "--embedded-etcd-peer", freePort(t),
		"--sync-dir", "../../examples/policies", "--log-format", "json")
	cmd.Stderr = &logs
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + admin + "/health/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "never ready; logs:\n%s", &logs)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-done:
		require.NoError(t, err, "exit status after SIGTERM; logs:\n%s", logs.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("did not stop within 20s of SIGTERM; logs:\n%s", logs.String())
	}
	require.Contains(t, logs.String(), "stopped gracefully")
}

// Bad flags are a usage error with exit code 2.
func TestBadFlagsExitTwo(t *testing.T) {
	var stderr bytes.Buffer
	require.Equal(t, 2, run([]string{"--no-such-flag"}, io.Discard, &stderr))
	require.Equal(t, 2, run([]string{"--log-format", "xml"}, io.Discard, &stderr))
	require.Contains(t, stderr.String(), "--log-format must be text or json")
}

// A non-loopback admin address without a token file refuses to start.
func TestNonLoopbackNeedsTokenFile(t *testing.T) {
	var stderr bytes.Buffer
	code := run([]string{"--admin-addr", "0.0.0.0:0", "--data-dir", t.TempDir()}, io.Discard, &stderr)
	require.Equal(t, 1, code)
	require.Contains(t, stderr.String(), "--token-file")
}
