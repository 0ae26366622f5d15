package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Stopping `make run` by its PID stops the server too: make passes SIGTERM
// to its child, which is the server itself (the recipe execs the built
// binary), so the ports are free again afterwards.
func TestMakeRunStopsWithMake(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make is needed: %v", err)
	}
	admin, xds := freePort(t), freePort(t)
	args := "--admin-addr " + admin + " --xds-addr " + xds +
		" --embedded-etcd-listen " + freePort(t) + " --embedded-etcd-peer " + freePort(t) + " --log-format json"
	cmd := exec.Command("make", "-s", "-C", "../..", "run", "DATA_DIR="+t.TempDir(), "RUN_ARGS="+args)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
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
	}, 3*time.Minute, 100*time.Millisecond, "never ready; logs:\n%s", &logs)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("make did not stop within 30s of SIGTERM; logs:\n%s", logs.String())
	}
	// The server went with it: its ports can be bound again.
	require.Eventually(t, func() bool {
		for _, a := range []string{admin, xds} {
			l, err := net.Listen("tcp", a)
			if err != nil {
				return false
			}
			l.Close()
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "the server outlived make; logs:\n%s", &logs)
}

// make install puts the three commands where `go install` puts them, so
// that the docs' bare `bulwarkctl` works once that directory is on PATH.
func TestMakeInstall(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("make", "-s", "-C", "../..", "install")
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "installed in "+dir)
	for _, bin := range []string{"bulwark", "bulwarkctl", "bulwark-fleet"} {
		_, err := os.Stat(filepath.Join(dir, bin))
		require.NoError(t, err, bin)
	}
	v := exec.Command("sh", "-c", "bulwarkctl --server http://127.0.0.1:1 version")
	v.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err = v.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Regexp(t, `^client: bulwarkctl \S+`, string(out))
}
