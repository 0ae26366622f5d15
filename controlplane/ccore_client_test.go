package controlplane

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ccorePython is the interpreter with Debian's python3-grpcio (gRPC C-core).
// A Python found first on PATH (a virtualenv, pyenv) usually lacks it.
const ccorePython = "/usr/bin/python3"

// ccoreClientScript drives one C-core xDS client; see its docstring.
var ccoreClientScript = filepath.Join("..", "test", "ccore", "client.py")

// ccoreClient is one Python process running gRPC C-core's xDS client as a
// proxyless gRPC proxy of one source service. gRPC reads its bootstrap once
// per process, so each scenario starts its own.
type ccoreClient struct {
	t      *testing.T
	node   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *lockedBuffer

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan ccoreResult
	exited  chan struct{} // closed when stdout ends
}

// ccoreResult is one call's outcome as the Python client reports it.
type ccoreResult struct {
	ID       int     `json:"id"`
	Code     int     `json:"code"`
	Name     string  `json:"name"`
	Hostname string  `json:"hostname"`
	Details  string  `json:"details"`
	Latency  float64 `json:"latency"`
}

// Err is the result as a gRPC status error, nil for OK, so tests read it as
// they read gRPC-Go's errors (codeOf).
func (r ccoreResult) Err() error {
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

// requireCCore fails (never skips) when the C-core client cannot run: CI
// installs python3-grpcio (make deps), and so must a developer.
func requireCCore(t *testing.T) {
	t.Helper()
	out, err := exec.Command(ccorePython, "-c", "import grpc; print(grpc.__version__)").CombinedOutput()
	if err != nil {
		t.Fatalf("gRPC C-core client unavailable: %s -c 'import grpc' failed: %v\n%s\n"+
			"install it with `make deps` (apt-get install -y python3-grpcio)", ccorePython, err, out)
	}
	if _, err := os.Stat(ccoreClientScript); err != nil {
		t.Fatalf("C-core client script: %v", err)
	}
}

// startCCore starts a C-core xDS client of service source against the
// harness's control plane. env adds variables to its environment (such as
// GRPC_TRACE); BULWARK_CCORE_TRACE=1 turns on C-core's xDS traces for every
// client, and its log is printed when a test fails.
func (h *harness) startCCore(source string, env ...string) *ccoreClient {
	t := h.t
	t.Helper()
	requireCCore(t)
	node := fmt.Sprintf("%s-ccore-%d", source, nodeSeq.Add(1))
	bootstrap := fmt.Sprintf(`{"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],`+
		`"node": {"id": %q, "cluster": %q, "locality": {"zone": "z1"}}}`, h.cp.XDSAddr(), node, source)
	cmd := exec.Command(ccorePython, ccoreClientScript)
	cmd.Env = append(os.Environ(), "GRPC_XDS_BOOTSTRAP_CONFIG="+bootstrap, "PYTHONUNBUFFERED=1")
	if os.Getenv("BULWARK_CCORE_TRACE") == "1" {
		cmd.Env = append(cmd.Env, "GRPC_VERBOSITY=debug", "GRPC_TRACE=xds_client,xds_resolver,cds_lb")
	}
	cmd.Env = append(cmd.Env, env...)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	c := &ccoreClient{t: t, node: node, cmd: cmd, stdin: stdin, stderr: &lockedBuffer{},
		waiting: map[int]chan ccoreResult{}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	require.NoError(t, cmd.Start())

	ready := make(chan struct{})
	go c.read(stdout, ready)
	t.Cleanup(c.stop)
	select {
	case <-ready:
	case <-c.exited:
		t.Fatalf("C-core client exited before it was ready:\n%s", c.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("C-core client not ready within 30s:\n%s", c.stderr.String())
	}
	return c
}

func (c *ccoreClient) read(stdout io.Reader, ready chan struct{}) {
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
		var r ccoreResult
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

func (c *ccoreClient) stop() {
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
		c.t.Logf("C-core client %s stderr:\n%s", c.node, log)
	}
}

// start begins one unary call to xds:///target and returns where its result
// will arrive. metadata may be nil.
func (c *ccoreClient) start(target string, timeout time.Duration, payload string, metadata map[string]string) <-chan ccoreResult {
	ch := make(chan ccoreResult, 1)
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
		ch <- ccoreResult{ID: id, Code: -1, Details: "write to client: " + err.Error()}
	}
	return ch
}

// call makes one unary call and waits for its result: the call's own
// deadline plus a margin, so a wedged client fails the test rather than
// hanging it.
func (c *ccoreClient) call(target string, timeout time.Duration, payload string, metadata map[string]string) ccoreResult {
	c.t.Helper()
	select {
	case r := <-c.start(target, timeout, payload, metadata):
		return r
	case <-c.exited:
		c.t.Fatalf("C-core client exited:\n%s", c.stderr.String())
	case <-time.After(timeout + 15*time.Second):
		c.t.Fatalf("C-core client gave no result within %s", timeout+15*time.Second)
	}
	return ccoreResult{}
}
