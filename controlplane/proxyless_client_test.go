package controlplane

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// lineClient is one process running a gRPC implementation's xDS client
// (C-core in Python, grpc-js in Node.js) as a proxyless gRPC proxy of one
// source service, driven by JSON lines on its stdin and answering one JSON
// line per call (test/ccore/client.py documents the protocol). gRPC reads
// its bootstrap once per process, so each scenario starts its own.
type lineClient struct {
	t      *testing.T
	name   string // "C-core", "grpc-js": for messages
	node   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *lockedBuffer

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan clientResult
	exited  chan struct{} // closed when stdout ends
}

// clientResult is one call's outcome as the client reports it.
type clientResult struct {
	ID       int     `json:"id"`
	Code     int     `json:"code"`
	Name     string  `json:"name"`
	Hostname string  `json:"hostname"`
	Details  string  `json:"details"`
	Latency  float64 `json:"latency"`
}

// Err is the result as a gRPC status error, nil for OK, so tests read it as
// they read gRPC-Go's errors (codeOf).
func (r clientResult) Err() error {
	if r.Code == 0 {
		return nil
	}
	if r.Code < 0 {
		return fmt.Errorf("client error: %s", r.Details)
	}
	return status.Error(codes.Code(r.Code), r.Details)
}

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

// bootstrapFor is the xDS bootstrap of a proxyless client of source.
func (h *harness) bootstrapFor(node, source string) string {
	return fmt.Sprintf(`{"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],`+
		`"node": {"id": %q, "cluster": %q, "locality": {"zone": "z1"}}}`, h.cp.XDSAddr(), node, source)
}

// launch starts cmd as the client name of node and waits until it says it
// is ready; notReady is the hint given when it exits first.
func launch(t *testing.T, name, node string, cmd *exec.Cmd, notReady string) *lineClient {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	c := &lineClient{t: t, name: name, node: node, cmd: cmd, stdin: stdin, stderr: &lockedBuffer{},
		waiting: map[int]chan clientResult{}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	require.NoError(t, cmd.Start())

	ready := make(chan struct{})
	go c.read(stdout, ready)
	t.Cleanup(c.stop)
	select {
	case <-ready:
	case <-c.exited:
		t.Fatalf("%s client exited before it was ready (%s):\n%s", name, notReady, c.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s client not ready within 30s:\n%s", name, c.stderr.String())
	}
	return c
}

func (c *lineClient) read(stdout io.Reader, ready chan struct{}) {
	defer close(c.exited)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	first := true
	for sc.Scan() {
		line := sc.Bytes()
		if first {
			first = false
			close(ready)
			continue
		}
		var r clientResult
		if err := json.Unmarshal(line, &r); err != nil {
			fmt.Fprintf(c.stderr, "unreadable result %q: %v\n", line, err)
			continue
		}
		c.mu.Lock()
		ch := c.waiting[r.ID]
		delete(c.waiting, r.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
}

func (c *lineClient) stop() {
	c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
	c.cmd.Wait()
	if c.t.Failed() {
		log := c.stderr.String()
		if len(log) > 20000 {
			log = "…" + log[len(log)-20000:]
		}
		c.t.Logf(c.name+" client %s stderr:\n%s", c.node, log)
	}
}

// start begins one unary call to xds:///target and returns where its result
// will arrive. metadata may be nil.
func (c *lineClient) start(target string, timeout time.Duration, payload string, metadata map[string]string) <-chan clientResult {
	ch := make(chan clientResult, 1)
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	c.waiting[id] = ch
	c.mu.Unlock()
	line, err := json.Marshal(map[string]any{
		"op": "call", "id": id, "target": target, "timeout": timeout.Seconds(),
		"payload": payload, "metadata": metadata,
	})
	require.NoError(c.t, err)
	if _, err := c.stdin.Write(append(line, '\n')); err != nil {
		c.mu.Lock()
		delete(c.waiting, id)
		c.mu.Unlock()
		ch <- clientResult{ID: id, Code: -1, Details: "write to client: " + err.Error()}
	}
	return ch
}

// call makes one unary call and waits for its result: the call's own
// deadline plus a margin, so a wedged client fails the test rather than
// hanging it.
func (c *lineClient) call(target string, timeout time.Duration, payload string, metadata map[string]string) clientResult {
	c.t.Helper()
	select {
	case r := <-c.start(target, timeout, payload, metadata):
		return r
	case <-c.exited:
		c.t.Fatalf(c.name+" client exited:\n%s", c.stderr.String())
	case <-time.After(timeout + 15*time.Second):
		c.t.Fatalf(c.name+" client gave no result within %s", timeout+15*time.Second)
	}
	return clientResult{}
}
