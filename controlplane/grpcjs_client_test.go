package controlplane

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
func (h *harness) startGrpcJS(source string, env ...string) *lineClient {
	t := h.t
	t.Helper()
	nodeBin := requireGrpcJS(t)
	node := fmt.Sprintf("%s-grpcjs-%d", source, nodeSeq.Add(1))
	bootstrap := h.bootstrapFor(node, source)
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
	return launch(t, "grpc-js", node, cmd, "if it cannot load its modules, run `make deps`")
}
