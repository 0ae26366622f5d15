package fleet

import (
	"testing"

	"go.uber.org/goleak"
)

// The Writer runs a loop, and the store and embedded etcd of the tests
// start goroutines; every test must stop them all.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
