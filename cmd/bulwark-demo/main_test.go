package main

import (
	"testing"

	"go.uber.org/goleak"
)

// Every demo a test starts is stopped with all its goroutines: callers,
// upstreams, the control endpoint and the control plane.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// process-wide background goroutines of etcd and OpenCensus
		goleak.IgnoreTopFunction("go.etcd.io/etcd/pkg/v3/traceutil.(*Trace).logInfo"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}
