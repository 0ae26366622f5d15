package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// etcd's and gRPC's process-wide background goroutines.
		goleak.IgnoreTopFunction("go.etcd.io/etcd/pkg/v3/traceutil.(*Trace).logInfo"),
		goleak.IgnoreAnyFunction("google.golang.org/grpc/internal/grpcsync.(*CallbackSerializer).run"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}

// runFleet runs the command in process and decodes its summary.
func runFleet(t *testing.T, args ...string) report {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(append([]string{"--embedded", "--warm-timeout", "1m", "--timeout", "30s"}, args...), &out, &errOut)
	var rep report
	require.NoError(t, json.Unmarshal(out.Bytes(), &rep), "stdout: %s\nstderr: %s", out.String(), errOut.String())
	require.Equal(t, 0, code, "error: %s\nstderr: %s", rep.Error, errOut.String())
	return rep
}

// TestConvergeEveryFlavor measures a change with Envoy over SotW and
// delta, and with proxyless gRPC: every stream converges, and the control
// plane agrees that every proxy runs the write's revision.
func TestConvergeEveryFlavor(t *testing.T) {
	for _, c := range [][]string{
		{"--protocol", "sotw"},
		{"--protocol", "delta"},
		{"--protocol", "sotw", "--warming=false"},
		{"--protocol", "delta", "--warming=false"},
		{"--flavor", "grpc", "--grpc-targets", "2"},
	} {
		t.Run(strings.Join(c, " "), func(t *testing.T) {
			rep := runFleet(t, append([]string{"--streams", "12", "--sources", "3", "--writes", "2", "--gap", "10ms", "--per-group"}, c...)...)
			require.Equal(t, 3, rep.Services, "the missing sources are seeded")
			require.Len(t, rep.Writes, 2)
			for _, w := range rep.Writes {
				require.False(t, w.TimedOut)
				require.Equal(t, 12, w.Total)
				require.Equal(t, 12, w.Converged)
				require.Equal(t, 12, w.Count)
				require.Equal(t, []string{"routes"}, w.Changed, "a request timeout lives in the route configuration")
				require.Equal(t, 3, w.Groups)
				require.Len(t, w.PerGroup, 3)
				require.NotNil(t, w.ConfirmedByControlPlane)
				require.Equal(t, 12, *w.ConfirmedByControlPlane)
				require.Positive(t, w.Revision)
				require.LessOrEqual(t, w.P50Ms, w.P99Ms)
				require.LessOrEqual(t, w.P99Ms, w.MaxMs)
				require.Zero(t, w.WarmedByTimeout)
				require.Zero(t, w.NACKs)
			}
			require.Greater(t, rep.Writes[1].Revision, rep.Writes[0].Revision)
			require.Equal(t, 24, rep.Convergence.Count)
			require.Equal(t, int64(12), rep.Memory.Loaded.Connected)
			require.Equal(t, 9, rep.Memory.ProxiesAdded)
			require.Positive(t, rep.Memory.Loaded.HeapInuseBytes)
			require.Zero(t, rep.Failures)
		})
	}
}

// TestClusterChange measures the built-in cluster-only change (a bulkhead
// edit): clusters change, and their endpoints are sent again with them;
// routes do not. The warming client converges once the new clusters warmed.
func TestClusterChange(t *testing.T) {
	for _, protocol := range []string{"sotw", "delta"} {
		t.Run(protocol, func(t *testing.T) {
			rep := runFleet(t, "--streams", "9", "--sources", "3", "--writes", "2", "--gap", "10ms", "--change", "cluster", "--protocol", protocol)
			require.Equal(t, true, rep.Config["warming"])
			for _, w := range rep.Writes {
				require.Equal(t, 9, w.Converged)
				require.Contains(t, w.Changed, "clusters")
				require.NotContains(t, w.Changed, "routes")
				require.Equal(t, 9, *w.ConfirmedByControlPlane)
				require.Zero(t, w.WarmedByTimeout)
				require.Zero(t, w.NACKs)
			}
			require.Zero(t, rep.WarmedByTimeout)
		})
	}
}

// TestWarmingClientConvergesOnlyOnceWarm holds back every endpoint
// response that arrives after a cluster change was written. While they are
// held, every proxy has a warming cluster and none has converged (the
// model also holds its CDS ACK back); once they are released, every proxy
// converges, and each one's CDS ACK and convergence come after the release.
func TestWarmingClientConvergesOnlyOnceWarm(t *testing.T) {
	for _, protocol := range []string{"sotw", "delta"} {
		t.Run(protocol, func(t *testing.T) {
			const streams = 6
			var (
				mu       sync.Mutex
				held     = map[string]bool{}
				fl       *fleet
				release  = make(chan struct{})
				allHeld  = make(chan struct{})
				released time.Time
			)
			testRecvHook = func(p *proxy, msg any) {
				if typeIndex(responseType(msg)) != tEDS {
					return
				}
				p.mu.Lock()
				measuring := p.measure.active
				p.mu.Unlock()
				if !measuring {
					return
				}
				mu.Lock()
				fl = p.f
				if !held[p.id] {
					held[p.id] = true
					if len(held) == streams {
						close(allHeld)
					}
				}
				mu.Unlock()
				<-release
			}
			defer func() { testRecvHook = nil }()
			checked := make(chan []string, 1)
			go func() {
				var problems []string
				defer func() { checked <- problems }()
				select {
				case <-allHeld:
				case <-time.After(time.Minute):
					problems = append(problems, "not every proxy received endpoints after the write")
					close(release)
					return
				}
				mu.Lock()
				f := fl
				mu.Unlock()
				if o := f.evaluate(time.Now()); o.converged != 0 {
					problems = append(problems, fmt.Sprintf("%d proxies converged with their endpoints held back", o.converged))
				}
				for _, p := range f.all() {
					if len(p.model.WarmingClusters()) == 0 {
						problems = append(problems, p.id+" has no warming cluster with its endpoints held back")
					}
				}
				mu.Lock()
				released = time.Now()
				mu.Unlock()
				close(release)
			}()
			rep := runFleet(t, "--streams", fmt.Sprint(streams), "--sources", "2", "--writes", "1", "--change", "cluster", "--protocol", protocol)
			require.Empty(t, <-checked)
			require.Equal(t, streams, rep.Writes[0].Converged)
			require.Zero(t, rep.WarmedByTimeout)
			for _, p := range fl.all() {
				p.mu.Lock()
				cdsAck, warmAt := p.measure.changedAt[tCDS], p.measure.warmAt
				p.mu.Unlock()
				require.False(t, cdsAck.Before(released), "%s ACKed the new clusters while they were warming", p.id)
				require.False(t, warmAt.Before(released), "%s was warm before its endpoints arrived", p.id)
			}
		})
	}
}

// TestAbuseIsBounded runs abusive clients next to a converging fleet: they
// send what they were asked to (or are refused), stop by themselves, and the
// fleet still converges.
func TestAbuseIsBounded(t *testing.T) {
	rep := runFleet(t, "--streams", "6", "--sources", "2", "--writes", "2", "--gap", "10ms",
		"--abuse-types", "1200", "--abuse-clusters", "20", "--abuse-streams", "4")
	a := rep.Abuse
	require.NotNil(t, a)
	require.Equal(t, 1200, a.Types)
	require.Equal(t, 20, a.Clusters)
	require.Positive(t, a.TypesSent)
	require.LessOrEqual(t, a.TypesSent, int64(1200))
	require.LessOrEqual(t, a.ClustersSent, int64(20))
	require.Positive(t, a.Streams)
	t.Logf("abuse: %+v", *a)
	for _, w := range rep.Writes {
		require.Equal(t, 6, w.Converged)
	}
}

// TestChangeFile measures a change given as a policy file.
func TestChangeFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "change.yaml")
	require.NoError(t, os.WriteFile(f, []byte(`apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: svc-00001}
spec:
  target: {service: svc-00001}
  timeouts: {request: 1500ms}
`), 0o644))
	rep := runFleet(t, "--streams", "4", "--sources", "2", "--writes", "1", "--change-file", f)
	require.Equal(t, 4, rep.Writes[0].Converged)
	require.Equal(t, "api", rep.WriteVia)
}

// TestWriteThroughEtcd writes the change under its etcd key, as when the
// REST API has no write endpoints.
func TestWriteThroughEtcd(t *testing.T) {
	rep := runFleet(t, "--streams", "4", "--sources", "2", "--writes", "1", "--write-via", "etcd")
	require.Equal(t, "store", rep.WriteVia)
	require.Equal(t, 4, rep.Writes[0].Converged)
	require.Equal(t, 4, *rep.Writes[0].ConfirmedByControlPlane)
}

// TestStormReconnects restarts the control plane under the fleet: every
// proxy reconnects and ACKs everything again.
func TestStormReconnects(t *testing.T) {
	for _, protocol := range []string{"sotw", "delta"} {
		t.Run(protocol, func(t *testing.T) {
			rep := runFleet(t, "--scenario", "storm", "--streams", "8", "--sources", "2", "--protocol", protocol, "--backoff-base", "50ms")
			require.NotNil(t, rep.Storm)
			require.Equal(t, 8, rep.Storm.Total)
			require.Equal(t, 8, rep.Storm.Reacked)
			require.Positive(t, rep.Storm.RestartSeconds)
			require.GreaterOrEqual(t, rep.Storm.AllAckedSeconds, rep.Storm.RestartSeconds)
			require.GreaterOrEqual(t, rep.Failures, int64(8), "every stream broke once")
		})
	}
}

// TestChurnCoalescesAndSettles writes fast, then checks a final write
// converges and that memory is reported before and after.
func TestChurnCoalescesAndSettles(t *testing.T) {
	rep := runFleet(t, "--scenario", "churn", "--streams", "6", "--sources", "3", "--rate", "50", "--duration", "1s", "--quiet", "100ms", "--churn-targets", "3")
	c := rep.Churn
	require.NotNil(t, c)
	require.Greater(t, c.Writes, 20)
	require.Zero(t, c.Failed)
	require.Equal(t, 3, c.Targets)
	require.Positive(t, c.Builds)
	require.Less(t, c.Builds, int64(c.Writes), "the debounce coalesces writes into fewer builds")
	require.Equal(t, 6, c.Final.Converged)
	require.Positive(t, c.Baseline.HeapInuseBytes)
	require.Positive(t, c.After.HeapInuseBytes)
}

// TestColdStart seeds a store, restarts the control plane on it and times
// it until ready and until a fleet is warm.
func TestColdStart(t *testing.T) {
	rep := runFleet(t, "--scenario", "cold", "--seed-services", "30", "--streams", "3", "--sources", "3")
	require.NotNil(t, rep.Cold)
	require.Equal(t, 30, rep.Cold.Services)
	require.Positive(t, rep.Cold.ReadySeconds)
	require.GreaterOrEqual(t, rep.Cold.WarmSeconds, rep.Cold.ReadySeconds)
}

func TestFlagsAreChecked(t *testing.T) {
	for _, args := range [][]string{
		{"--protocol", "rest"},
		{"--flavor", "grpc", "--protocol", "delta"},
		{"--streams", "2", "--sources", "3"},
		{"--scenario", "cold"},
		{"--embedded", "--server-cmd", "bulwark"},
		{"--change", "listener"},
		{"--abuse-types", "-1"},
		{"extra"},
	} {
		var out, errOut bytes.Buffer
		require.Equal(t, 2, run(args, &out, &errOut), args)
		require.Contains(t, errOut.String(), "bulwark-fleet:", args)
	}
}

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	l := summarize(ds)
	require.Equal(t, latencies{Count: 100, P50Ms: 50, P90Ms: 90, P99Ms: 99, MaxMs: 100}, l)
	require.Equal(t, latencies{}, summarize(nil))
	require.Equal(t, latencies{Count: 1, P50Ms: 7, P90Ms: 7, P99Ms: 7, MaxMs: 7}, summarize([]time.Duration{7 * time.Millisecond}))
}

func TestHistogramQuantile(t *testing.T) {
	before := map[float64]float64{0.1: 0, 0.2: 0, 0.4: 0, math.Inf(1): 0}
	after := map[float64]float64{0.1: 50, 0.2: 90, 0.4: 100, math.Inf(1): 100}
	p50, n := histogramQuantile(0.5, before, after)
	require.Equal(t, 100.0, n)
	require.InDelta(t, 0.1, p50, 1e-9)
	p70, _ := histogramQuantile(0.7, before, after)
	require.InDelta(t, 0.15, p70, 1e-9)
	p, n := histogramQuantile(0.5, after, after)
	require.Zero(t, p)
	require.Zero(t, n)
}

func TestNameSetDiff(t *testing.T) {
	s := makeNameSet([]string{"c", "a", "b", "a"})
	require.Equal(t, nameSet{"a", "b", "c"}, s)
	added, removed := s.diff(nameSet{"b", "d"})
	require.Equal(t, []string{"a", "c"}, added)
	require.Equal(t, []string{"d"}, removed)
	require.True(t, s.equal(nameSet{"a", "b", "c"}))
}

func TestScrapeLines(t *testing.T) {
	text := `# HELP x
go_goroutines 42
bulwark_xds_pushes_total{type="routes"} 3
bulwark_xds_pushes_total{type="clusters"} 4
bulwark_convergence_seconds_bucket{le="+Inf"} 9
`
	got := map[string]float64{}
	require.NoError(t, scrapeLines(strings.NewReader(text), func(name, labels string, v float64) { got[name+labels] += v }))
	require.Equal(t, 42.0, got["go_goroutines"])
	require.Equal(t, 3.0, got[`bulwark_xds_pushes_total{type="routes"}`])
	require.Equal(t, 9.0, got[`bulwark_convergence_seconds_bucket{le="+Inf"}`])
}

// TestMarkdownSummary appends a readable summary of a run.
func TestMarkdownSummary(t *testing.T) {
	md := filepath.Join(t.TempDir(), "bench.md")
	rep := runFleet(t, "--streams", "4", "--sources", "2", "--writes", "1", "--append-md", md)
	require.Equal(t, 4, rep.Writes[0].Converged)
	b, err := os.ReadFile(md)
	require.NoError(t, err)
	text := string(b)
	require.Contains(t, text, "#### bulwark-fleet converge")
	require.Contains(t, text, "--append-md")
	require.Contains(t, text, "| memory per connected proxy |")
	require.Contains(t, text, "| write → every stream ACKed and warm | p50 ")
	require.Contains(t, text, "| warmed by timeout / NACKs | 0 / 0 |")
}

// The simulator says what it is doing while it runs: a line when each phase
// starts, and the counts of a long wait (streams warm, streams converged)
// every --progress-every, not only a summary at the end.
func TestProgressWhileRunning(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"--embedded", "--warm-timeout", "1m", "--timeout", "30s",
		"--streams", "12", "--sources", "3", "--writes", "1", "--progress-every", "1ms"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	log := errOut.String()
	at := 0
	for _, want := range []string{
		"bulwark-fleet: control plane: starting (embedded, in this process)\n",
		"bulwark-fleet: pilot: opening 3 streams, one per group\n",
		"bulwark-fleet: warming: ",
		"bulwark-fleet: fleet: opening 9 more streams\n",
		"/12 streams warm, ",
		"bulwark-fleet: write: revision ",
		"bulwark-fleet: converging: ",
		"/12 streams on the new version",
		"bulwark-fleet: write 1/1 ",
	} {
		i := strings.Index(log[at:], want)
		require.GreaterOrEqual(t, i, 0, "missing %q after offset %d in:\n%s", want, at, log)
		at += i + len(want)
	}
}
