package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/xds"

	"github.com/bulwarkmesh/bulwark/policies"
)

// startTestDemo runs a whole demo on free ports. Its callers are gRPC-Go's
// xDS clients with the bootstrap the demo wrote, given to gRPC as a
// resolver: the test process cannot set GRPC_XDS_BOOTSTRAP before gRPC
// reads it.
func startTestDemo(t *testing.T) *demo {
	t.Helper()
	cfg := config{
		DataDir: t.TempDir(), XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		EtcdListen: "127.0.0.1:0", EtcdPeer: "127.0.0.1:0", ControlAddr: "127.0.0.1:0",
		Rate: 50, Deadline: 3 * time.Second, Window: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		dialWith: func(bootstrap []byte) ([]grpc.DialOption, error) {
			r, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
			return []grpc.DialOption{grpc.WithResolvers(r)}, err
		},
	}
	d, err := startDemo(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(d.stop)
	return d
}

// applyFile writes one of examples/demo through the admin API, as
// bulwarkctl apply does.
func applyFile(t *testing.T, d *demo, name string) {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("../../examples/demo", name))
	require.NoError(t, err)
	resp, err := http.Post("http://"+d.cp.AdminAddr()+"/v1/apply", "application/yaml", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", answer)
}

// until waits for a condition on the readout; it never asserts how long
// anything took, only that the numbers get there.
func until(t *testing.T, d *demo, what string, cond func(s Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if cond(d.stats()) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the readout never showed %s:\n%s", what, d.stats().render())
}

func callerRow(s Stats, name string) CallerStats {
	for _, c := range s.Callers {
		if c.Name == name {
			return c
		}
	}
	return CallerStats{}
}

func upstreamRPS(s Stats, name string) float64 {
	for _, u := range s.Upstreams {
		if u.Name == name {
			return u.RPS
		}
	}
	return -1
}

// full says the window holds a full second of calls (the callers send 50 a
// second): a share computed over it is not a handful of calls.
func full(c CallerStats) bool { return c.Calls >= 30 }

// The demo's callers reach its upstreams through its control plane with
// gRPC's own xDS client, and each policy of the walkthrough moves the
// readout's numbers: a retry raises the success rate against a failing
// host, the circuit breaker stops its traffic, a timeout cuts the latency
// of a slow host's calls, a fallback serves when every host is dead, and a
// chaos experiment fails calls until it is stopped.
func TestDemoPoliciesMoveTheReadout(t *testing.T) {
	d := startTestDemo(t)
	set := func(name string, b Behaviour) {
		us, err := d.find(name)
		require.NoError(t, err)
		for _, u := range us {
			require.NoError(t, u.set(b))
		}
	}
	payments := func(s Stats) CallerStats { return callerRow(s, "payments") }
	until(t, d, "every call to payments and inventory succeeding", func(s Stats) bool {
		p, i := payments(s), callerRow(s, "inventory")
		return full(p) && p.Success == 100 && full(i) && i.Success == 100 &&
			upstreamRPS(s, "payments-1") > 0 && upstreamRPS(s, "payments-2") > 0 && upstreamRPS(s, "payments-3") > 0
	})

	// Retry: one host of three fails every call.
	set("payments-2", Behaviour{Errors: 100})
	until(t, d, "a share of calls failing with UNAVAILABLE", func(s Stats) bool {
		p := payments(s)
		return full(p) && p.Success < 90 && p.Errors["Unavailable"] > 0
	})
	applyFile(t, d, "retries.yaml")
	until(t, d, "retries hiding the failing host", func(s Stats) bool {
		p := payments(s)
		return full(p) && p.Success >= 99 && upstreamRPS(s, "payments-2") > 0
	})

	// Ejection: the failing host gets no calls at all.
	applyFile(t, d, "circuit-breaker.yaml")
	until(t, d, "payments-2 ejected", func(s Stats) bool {
		return upstreamRPS(s, "payments-2") == 0 && full(payments(s)) && payments(s).Success >= 99
	})

	// Timeout: another host holds calls for 1.5s.
	set("payments-3", Behaviour{Latency: 1500 * time.Millisecond})
	until(t, d, "a p99 of at least the slow host's 1.5s", func(s Stats) bool {
		p := payments(s)
		return full(p) && p.P99 >= 1500 && p.Errors["DeadlineExceeded"] == 0
	})
	applyFile(t, d, "timeout.yaml")
	until(t, d, "the 300ms timeout ending the slow calls", func(s Stats) bool {
		p := payments(s)
		return full(p) && p.P99 < 1500 && p.Errors["DeadlineExceeded"] > 0
	})

	// Fallback: every payments host is dead.
	set("payments", Behaviour{Down: true})
	until(t, d, "calls to payments failing", func(s Stats) bool {
		p := payments(s)
		return full(p) && p.Success < 10
	})
	applyFile(t, d, "fallback.yaml")
	until(t, d, "payments-static serving the calls", func(s Stats) bool {
		p := payments(s)
		return full(p) && p.Success >= 99 && upstreamRPS(s, "payments-static-1") > 0
	})
	set("payments", Behaviour{})
	until(t, d, "payments serving again", func(s Stats) bool {
		return upstreamRPS(s, "payments-1") > 0 && upstreamRPS(s, "payments-static-1") == 0
	})

	// Chaos: half of the calls to inventory fail, until the kill switch.
	applyFile(t, d, "chaos-inventory.yaml")
	until(t, d, "the experiment failing calls to inventory", func(s Stats) bool {
		i := callerRow(s, "inventory")
		return full(i) && i.Success < 80 && i.Errors["Unavailable"] > 0
	})
	resp, err := http.Post("http://"+d.cp.AdminAddr()+"/v1/experiments/stop", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	until(t, d, "inventory back to every call succeeding", func(s Stats) bool {
		i := callerRow(s, "inventory")
		return full(i) && i.Success == 100
	})
}

// The mesh the demo writes and the walkthrough's files are valid together,
// and lint finds nothing to say but the chaos experiment's expected warnings
// (inventory has no fallback and no timeout: the hypothesis expects errors).
func TestDemoFilesValidate(t *testing.T) {
	d := &demo{}
	for i, m := range meshUpstreams {
		d.upstreams = append(d.upstreams, &upstream{name: m.name, service: m.service, protocol: m.protocol, port: 19101 + i})
	}
	all := d.meshYAML()
	files, err := filepath.Glob("../../examples/demo/*.yaml")
	require.NoError(t, err)
	require.Len(t, files, 5)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		all += "---\n" + string(b)
	}
	rs, err := policies.DecodeAll([]byte(all))
	require.NoError(t, err)
	for _, r := range rs {
		require.Empty(t, policies.Validate(r, policies.ValidateOptions{}), "%s %s", r.GetKind(), r.GetMeta().Name)
	}
	set := policies.NewSet(rs...)
	// Expected: the experiment's two warnings (inventory has no fallback and
	// no timeout; its hypothesis expects the errors), and "no request
	// timeout" for every service but payments: the demo starts with no
	// policy, to show what each one changes.
	var unexpected []string
	noTimeout := map[string]bool{}
	for _, f := range policies.Lint(set) {
		switch {
		case f.Name == "inventory-unavailable" && f.Severity == policies.SeverityWarning:
		case strings.Contains(f.Message, "have no request timeout") && f.Name != "payments":
			noTimeout[f.Name] = true
		default:
			unexpected = append(unexpected, fmt.Sprintf("%s %s %s %s: %s", f.Severity, f.Kind, f.Name, f.Field, f.Message))
		}
	}
	require.Empty(t, unexpected)
	require.Equal(t, map[string]bool{"checkout": true, "inventory": true, "payments-static": true, "catalog": true}, noTimeout)
}
