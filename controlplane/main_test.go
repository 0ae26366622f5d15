package controlplane

import (
	"testing"

	"go.uber.org/goleak"
)

// Every control plane a test starts is stopped, with all its goroutines,
// and so is every xDS client and backend it dials. One goroutine of gRPC's
// own is let go: the file watcher of the certificate provider that the
// mTLS test's xDS bootstrap names, which gRPC's xDS client pool keeps after
// the last channel using it closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("google.golang.org/grpc/credentials/tls/certprovider/pemfile.(*watcher).run"))
}
