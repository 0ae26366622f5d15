package prom

import (
	"testing"

	"go.uber.org/goleak"
)

// Circuits starts a goroutine per service; every test must end them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
