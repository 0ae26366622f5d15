package experiments

import (
	"testing"

	"go.uber.org/goleak"
)

// The runner's loop and the store's embedded etcd start goroutines; every
// test must stop them all.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
