package controlplane

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// ccorePython is the interpreter with Debian's python3-grpcio (gRPC C-core).
// A Python found first on PATH (a virtualenv, pyenv) usually lacks it.
const ccorePython = "/usr/bin/python3"

// ccoreClientScript drives one C-core xDS client; see its docstring.
var ccoreClientScript = filepath.Join("..", "test", "ccore", "client.py")

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
func (h *harness) startCCore(source string, env ...string) *lineClient {
	t := h.t
	t.Helper()
	requireCCore(t)
	node := fmt.Sprintf("%s-ccore-%d", source, nodeSeq.Add(1))
	bootstrap := h.bootstrapFor(node, source)
	cmd := exec.Command(ccorePython, ccoreClientScript)
	cmd.Env = append(os.Environ(), "GRPC_XDS_BOOTSTRAP_CONFIG="+bootstrap, "PYTHONUNBUFFERED=1")
	if os.Getenv("BULWARK_CCORE_TRACE") == "1" {
		cmd.Env = append(cmd.Env, "GRPC_VERBOSITY=debug", "GRPC_TRACE=xds_client,xds_resolver,cds_lb")
	}
	cmd.Env = append(cmd.Env, env...)
	return launch(t, "C-core", node, cmd, "is python3-grpcio installed? run `make deps`")
}
