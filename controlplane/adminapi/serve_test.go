package adminapi_test

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/adminapi"
	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

// serveLimited serves the admin API over a real store through the admin
// port's server and listener, with lim.
func serveLimited(t *testing.T, lim adminapi.Limits) string {
	t.Helper()
	srv := storetest.NewServer(t)
	cli := storetest.NewClient(t, srv)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := store.New(cli, store.Options{Logger: log, MaxTxnOps: srv.MaxTxnOps()})
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	s := adminapi.New(adminapi.Deps{
		Store: st, Applier: apply.New(st, policies.ValidateOptions{}),
		Fleet: &fakeFleet{}, Builds: &fakeBuilds{}, Health: &fakeHealth{ready: api.Readiness{Ready: true}, storeUp: true},
		Metrics: http.NotFoundHandler(), Replica: "test", Logger: log,
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs, ll := adminapi.HTTPServer(s.Handler(), lis, lim, log)
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ll) }()
	t.Cleanup(func() {
		require.NoError(t, hs.Close())
		require.ErrorIs(t, <-done, http.ErrServerClosed)
	})
	return lis.Addr().String()
}

// closedByServer waits (generously) for the server to close c: a read
// that ends in EOF or a reset, not in the deadline.
func closedByServer(t *testing.T, c net.Conn, r *bufio.Reader) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
	_, err := io.ReadAll(r)
	require.False(t, errors.Is(err, os.ErrDeadlineExceeded), "the server never closed the connection")
}

func get(t *testing.T, c net.Conn, r *bufio.Reader, path string) *http.Response {
	t.Helper()
	_, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
	resp, err := http.ReadResponse(r, nil)
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}

// Idle keep-alive connections and requests whose body never comes are
// closed by the server.
func TestAdminPortClosesIdleAndSlowConnections(t *testing.T) {
	addr := serveLimited(t, adminapi.Limits{Idle: 200 * time.Millisecond, Read: 300 * time.Millisecond})

	idle, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer idle.Close()
	r := bufio.NewReader(idle)
	require.Equal(t, http.StatusOK, get(t, idle, r, "/health/live").StatusCode)
	closedByServer(t, idle, r)

	slow, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer slow.Close()
	_, err = io.WriteString(slow, "PUT /v1/services/payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/yaml\r\nContent-Length: 1000\r\n\r\napiVersion: bulwark/v1\n")
	require.NoError(t, err)
	closedByServer(t, slow, bufio.NewReader(slow))
}

// Past its connection limit the port still answers health checks (on the
// reserve), refuses the rest with 503, and serves everyone again once
// connections close.
func TestAdminPortConnectionLimit(t *testing.T) {
	addr := serveLimited(t, adminapi.Limits{MaxConns: 3, Reserve: 2})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		held = append(held, c)
		require.Equal(t, http.StatusOK, get(t, c, bufio.NewReader(c), "/v1/status").StatusCode)
	}

	over, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer over.Close()
	or := bufio.NewReader(over)
	resp := get(t, over, or, "/v1/status")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))

	live, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer live.Close()
	resp = get(t, live, bufio.NewReader(live), "/health/live")
	require.Equal(t, http.StatusOK, resp.StatusCode, "liveness answers past the limit")
	require.True(t, resp.Close, "and closes its connection")

	// The first connections go: a new one is served in full.
	for _, c := range held {
		require.NoError(t, c.Close())
	}
	held = nil
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer c.Close()
		_, err = io.WriteString(c, "GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if err != nil {
			return false
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && strings.Contains(line, " 200 ")
	}, 20*time.Second, 20*time.Millisecond)
}
