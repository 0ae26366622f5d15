package controlplane

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// grpcjsDir holds test/grpcjs/client.js with its package.json and lock;
// `make deps` installs its node_modules with npm ci.
var grpcjsDir = filepath.Join("..", "test", "grpcjs")

// grpcjsEnv is what grpc-js-xds needs for the features Bulwark sends. In
// 1.14 each of them defaults to on (src/environment.ts), so these only keep
// a later default, or a variable in the caller's environment, from turning
// one off unnoticed: retries (route retry_policy), the fault filter
// (chaos), outlier detection (circuitBreaker). Aggregate clusters
// (fallback) and circuit_breakers max_requests (bulkhead) are not gated.
var grpcjsEnv = []string{
	"GRPC_XDS_EXPERIMENTAL_ENABLE_RETRY=true",
	"GRPC_XDS_EXPERIMENTAL_FAULT_INJECTION=true",
	"GRPC_EXPERIMENTAL_ENABLE_OUTLIER_DETECTION=true",
}

// grpcjsResult is one call's outcome: client.js speaks the line protocol of
// test/ccore/client.py, so its results read the same.
type grpcjsResult = ccoreResult

// grpcjsClient is one Node.js process running grpc-js's xDS client as a
// proxyless gRPC proxy of one source service. grpc-js-xds reads its
// bootstrap once per process, so each scenario starts its own.
type grpcjsClient struct {
	t      *testing.T
	node   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *lockedBuffer

	mu      sync.Mutex
	nextID  int
	waiting map[int]chan grpcjsResult
	exited  chan struct{} // closed when stdout ends
}

// requireGrpcJS fails (never skips) when the grpc-js client cannot run: CI
// installs its modules (make deps), and so must a developer. It returns the
// node binary. Loading grpc-js-xds takes seconds of CPU (it parses Envoy's
// protos), so this only looks for the installed packages; a client that
// still cannot load them fails in startGrpcJS with node's own error.
func requireGrpcJS(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("grpc-js client unavailable: no node on PATH (%v); install Node.js, then run `make deps`", err)
	}
	for _, pkg := range []string{"@grpc/grpc-js", "@grpc/grpc-js-xds"} {
		if _, err := os.Stat(filepath.Join(grpcjsDir, "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("grpc-js client unavailable: %s is not installed in %s (%v); "+
				"install it with `make deps` (npm ci in test/grpcjs)", pkg, grpcjsDir, err)
		}
	}
	return node
}

// startGrpcJS starts a grpc-js xDS client of service source against the
// harness's control plane. env adds variables to its environment;
// BULWARK_GRPCJS_TRACE=1 turns on grpc-js's xDS traces for every client,
// and its log is printed when a test fails.
func (h *harness) startGrpcJS(source string, env ...string) *grpcjsClient {
	t := h.t
	t.Helper()
	nodeBin := requireGrpcJS(t)
	node := fmt.Sprintf("%s-grpcjs-%d", source, nodeSeq.Add(1))
	bootstrap := fmt.Sprintf(`{"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],`+
		`"node": {"id": %q, "cluster": %q, "locality": {"zone": "z1"}}}`, h.cp.XDSAddr(), node, source)
	cmd := exec.Command(nodeBin, "client.js")
	cmd.Dir = grpcjsDir
	for _, kv := range os.Environ() {
		// A bootstrap file named in the environment would win over ours.
		if !strings.HasPrefix(kv, "GRPC_XDS_BOOTSTRAP=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GRPC_XDS_BOOTSTRAP_CONFIG="+bootstrap)
	cmd.Env = append(cmd.Env, grpcjsEnv...)
	if os.Getenv("BULWARK_GRPCJS_TRACE") == "1" {
		cmd.Env = append(cmd.Env, "GRPC_VERBOSITY=DEBUG",
			"GRPC_TRACE=xds_client,xds_resolver,cds_balancer,xds_cluster_impl,outlier_detection,fault_injection,retrying_call")
	}
	cmd.Env = append(cmd.Env, env...)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	c := &grpcjsClient{t: t, node: node, cmd: cmd, stdin: stdin, stderr: &lockedBuffer{},
		waiting: map[int]chan grpcjsResult{}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	require.NoError(t, cmd.Start())

	ready := make(chan struct{})
	go c.read(stdout, ready)
	t.Cleanup(c.stop)
	select {
	case <-ready:
	case <-c.exited:
		t.Fatalf("grpc-js client exited before it was ready (if it cannot load its modules, run `make deps`):\n%s", c.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("grpc-js client not ready within 30s:\n%s", c.stderr.String())
	}
	return c
}

func (c *grpcjsClient) read(stdout io.Reader, ready chan struct{}) {
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
		var r grpcjsResult
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

func (c *grpcjsClient) stop() {
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
		c.t.Logf("grpc-js client %s stderr:\n%s", c.node, log)
	}
}

// start begins one unary call to xds:///target and returns where its result
// will arrive. metadata may be nil.
func (c *grpcjsClient) start(target string, timeout time.Duration, payload string, metadata map[string]string) <-chan grpcjsResult {
	ch := make(chan grpcjsResult, 1)
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
		ch <- grpcjsResult{ID: id, Code: -1, Details: "write to client: " + err.Error()}
	}
	return ch
}

// call makes one unary call and waits for its result: the call's own
// deadline plus a margin, so a wedged client fails the test rather than
// hanging it.
func (c *grpcjsClient) call(target string, timeout time.Duration, payload string, metadata map[string]string) grpcjsResult {
	c.t.Helper()
	select {
	case r := <-c.start(target, timeout, payload, metadata):
		return r
	case <-c.exited:
		c.t.Fatalf("grpc-js client exited:\n%s", c.stderr.String())
	case <-time.After(timeout + 15*time.Second):
		c.t.Fatalf("grpc-js client gave no result within %s", timeout+15*time.Second)
	}
	return grpcjsResult{}
}
