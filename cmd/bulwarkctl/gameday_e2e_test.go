package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	xdsgrpc "google.golang.org/grpc/xds"

	"github.com/bulwarkmesh/bulwark/controlplane"
	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/prom"
	"github.com/bulwarkmesh/bulwark/controlplane/prom/promtest"
	"github.com/bulwarkmesh/bulwark/policies"
)

// gameBackend is a loopback gRPC backend the test makes slow or failing.
type gameBackend struct {
	testgrpc.UnimplementedTestServiceServer
	addr string
	fail atomic.Bool
	// delay, when set, gives the delay of the n-th call.
	delay atomic.Pointer[func(n int64) time.Duration]
	n     atomic.Int64
	mu    sync.Mutex
	used  []time.Duration // the latencies of the delayed calls, while recording
	rec   bool
}

func (b *gameBackend) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	n := b.n.Add(1)
	if b.fail.Load() {
		return nil, status.Error(codes.Unavailable, "backend failing on purpose")
	}
	if f := b.delay.Load(); f != nil {
		start := time.Now()
		select {
		case <-time.After((*f)(n)):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		// The latency the backend really had, oversleeping included.
		b.mu.Lock()
		if b.rec {
			b.used = append(b.used, time.Since(start))
		}
		b.mu.Unlock()
	}
	return &testgrpc.SimpleResponse{Hostname: b.addr}, nil
}

func startGameBackend(t *testing.T) *gameBackend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &gameBackend{addr: lis.Addr().String()}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, b)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return b
}

// traffic calls xds:///target from a gRPC xDS client of service source,
// instrumented with gRPC's OpenTelemetry metrics, until the test ends.
type traffic struct {
	okStreak atomic.Int64 // consecutive successful calls
	calls    atomic.Int64
}

func startTraffic(t *testing.T, xdsAddr, source, target string, m *promtest.GRPCMetrics) *traffic {
	t.Helper()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "cluster": %q, "locality": {"zone": "z1"}}
	}`, xdsAddr, source+"-"+target+"-gameday", source)
	res, err := xdsgrpc.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	require.NoError(t, err)
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(res), m.DialOption())
	require.NoError(t, err)
	tr := &traffic{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		client := testgrpc.NewTestServiceClient(cc)
		for ctx.Err() == nil {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := client.UnaryCall(cctx, &testgrpc.SimpleRequest{})
			ccancel()
			tr.calls.Add(1)
			if err == nil {
				tr.okStreak.Add(1)
			} else {
				tr.okStreak.Store(0)
				if status.Code(err) != codes.Unavailable {
					time.Sleep(20 * time.Millisecond) // not connected yet
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cc.Close() })
	return tr
}

// errorRatio is the steady-state check of the game days: the share of
// checkout's calls to payments that failed over the last 5s. The "or
// vector(0)" keeps the ratio defined when no call failed.
const errorRatio = `(sum(rate(grpc_client_call_duration_seconds_count{job="checkout",grpc_target="xds:///payments",grpc_status!="OK"}[5s])) or vector(0)) / sum(rate(grpc_client_call_duration_seconds_count{job="checkout",grpc_target="xds:///payments"}[5s]))`

func gameDay(name, fault, duration, steady string) string {
	return fmt.Sprintf(`apiVersion: bulwark/v1
kind: ChaosExperiment
metadata: {name: %s}
spec:
  target: {service: payments}
  sources: [checkout]
  %s
  duration: %s
  hypothesis: checkout's error rate stays under 20%%
  steadyState:
    interval: 1s
    failAfter: 2
    %s
    checks:
      - name: errors
        query: '%s'
        below: 0.2
`, name, fault, duration, steady, errorRatio)
}

func historyOf(t *testing.T, s *server, name string) *policies.ChaosExperiment {
	t.Helper()
	resp, err := http.Get(s.url + "/v1/history/experiments")
	require.NoError(t, err)
	defer resp.Body.Close()
	var list api.HistoryList
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	for _, h := range list.Items {
		if h.Metadata.Name == name {
			return h
		}
	}
	return nil
}

// TestGameDaysAgainstARealPrometheus runs game days end to end: a real
// Prometheus scrapes Bulwark's /metrics and the OpenTelemetry metrics of a
// real gRPC xDS client calling a loopback backend, and experiments with a
// steady-state hypothesis run through bulwarkctl chaos run --wait.
func TestGameDaysAgainstARealPrometheus(t *testing.T) {
	pay := startGameBackend(t)
	inv := startGameBackend(t)
	promSrv := promtest.New(t)
	s := startServer(t, func(c *controlplane.Config) {
		c.Prometheus = prom.Config{URL: promSrv.URL, Timeout: 2 * time.Second}
		c.SteadyStateTick = 100 * time.Millisecond
	})
	dir := t.TempDir()
	_, payPort, _ := net.SplitHostPort(pay.addr)
	_, invPort, _ := net.SplitHostPort(inv.addr)
	writeTestFile(t, dir, "mesh.yaml", fmt.Sprintf(`apiVersion: bulwark/v1
kind: Service
metadata: {name: checkout}
spec: {protocol: grpc, port: 8080}
---
apiVersion: bulwark/v1
kind: Service
metadata: {name: payments}
spec:
  protocol: grpc
  port: 50051
  endpoints: [{address: 127.0.0.1, port: %s}]
---
apiVersion: bulwark/v1
kind: Service
metadata: {name: inventory}
spec:
  protocol: grpc
  port: 50052
  endpoints: [{address: 127.0.0.1, port: %s}]
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: mesh-default}
spec:
  target: {service: "*"}
  timeouts: {request: 5s}
`, payPort, invPort))
	r := s.ctl(t, "", "apply", "-f", dir+"/mesh.yaml")
	require.Equal(t, exitOK, r.code, r.stderr)

	metrics := promtest.NewGRPCMetrics(t)
	envoyStats := serveEnvoyStats(t)
	promSrv.Start(t, time.Second, promtest.Target{Job: "checkout", Addr: metrics.Addr}, promtest.Target{Job: "bulwark", Addr: s.cp.AdminAddr()},
		promtest.Target{Job: "checkout-envoy", Addr: envoyStats})
	payTraffic := startTraffic(t, s.cp.XDSAddr(), "checkout", "payments", metrics)
	q, err := prom.New(prom.Config{URL: promSrv.URL})
	require.NoError(t, err)
	read := func(query string) (float64, bool) {
		ss, err := q.Query(context.Background(), query, time.Time{})
		if err != nil || len(ss) == 0 {
			return 0, false
		}
		return ss[0].Value, true
	}
	// Prometheus has Bulwark's metrics and the client's calls.
	require.Eventually(t, func() bool {
		v, ok := read(errorRatio)
		_, up := read(`bulwark_store_up{job="bulwark"} == 1`)
		return ok && v == 0 && up
	}, 60*time.Second, 200*time.Millisecond, "prometheus never saw checkout's calls succeed")

	t.Run("hypothesis holds: verdict held, exit 0", func(t *testing.T) {
		writeTestFile(t, dir, "held.yaml", gameDay("gd-held", "abort: {percent: 5, grpcStatus: 14}", "4s", ""))
		r := s.ctl(t, "", "chaos", "run", "-f", dir+"/held.yaml", "--wait", "--poll", "200ms")
		require.Equal(t, exitOK, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		require.Contains(t, r.stdout, "pre-start: errors = 0 ok")
		require.Contains(t, r.stdout, "verdict gd-held: held")
		h := historyOf(t, s, "gd-held")
		require.NotNil(t, h)
		st := h.Status
		require.Equal(t, policies.VerdictHeld, st.Verdict)
		require.Equal(t, policies.PhaseEnded, st.Phase)
		require.GreaterOrEqual(t, st.Evaluations, 2)
		require.Len(t, st.Checks, 1)
		c := st.Checks[0]
		require.Equal(t, "below 0.2", c.Bound)
		require.NotNil(t, c.First)
		require.NotNil(t, c.Worst)
		require.NotNil(t, c.Last)
		require.Zero(t, c.Failures)
		require.Len(t, st.PreStart, 1)
		require.True(t, st.PreStart[0].OK)
	})

	t.Run("hypothesis breaks: stopped after failAfter evaluations, faults gone, exit 1", func(t *testing.T) {
		writeTestFile(t, dir, "break.yaml", gameDay("gd-break", "abort: {percent: 50, grpcStatus: 14}", "2m", ""))
		r := s.ctl(t, "", "chaos", "run", "-f", dir+"/break.yaml", "--wait", "--poll", "200ms")
		require.Equal(t, exitFailed, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		require.Contains(t, r.stdout, "verdict gd-break: aborted")
		require.Contains(t, r.stdout, "FAILED")
		h := historyOf(t, s, "gd-break")
		require.NotNil(t, h)
		st := h.Status
		require.Equal(t, "stopped", st.Outcome)
		require.Equal(t, "steady-state", st.StoppedBy)
		require.Equal(t, policies.PhaseAborted, st.Phase)
		require.Equal(t, policies.VerdictAborted, st.Verdict)
		require.Contains(t, st.Reason, "check errors read")
		// Stopped within two evaluation intervals of the hypothesis
		// breaking: exactly failAfter (2) failed readings, the last
		// evaluation being the second of them.
		c := st.Checks[0]
		require.Equal(t, 2, c.Failures, "readings: %+v", c)
		require.False(t, c.Last.OK)
		require.Greater(t, *c.Worst.Value, 0.2)
		// Its faults left the client: calls succeed again.
		require.Eventually(t, func() bool { return payTraffic.okStreak.Load() >= 200 }, 30*time.Second, 50*time.Millisecond)
		require.Equal(t, 404, getCode(t, s.url+"/v1/experiments/gd-break"))
		r = s.ctl(t, "", "chaos", "list", "--history")
		require.Equal(t, exitOK, r.code, r.stderr)
		require.NotEmpty(t, lineWith(t, r.stdout, "gd-break", "stopped", "aborted", "steady-state"))
	})

	t.Run("not steady before the start: refused with the readings, or forced", func(t *testing.T) {
		pay.fail.Store(true)
		require.Eventually(t, func() bool { v, ok := read(errorRatio); return ok && v > 0.5 }, 30*time.Second, 200*time.Millisecond)
		writeTestFile(t, dir, "refused.yaml", gameDay("gd-refused", "delay: {percent: 5, fixed: 10ms}", "1m", ""))
		r := s.ctl(t, "", "chaos", "run", "-f", dir+"/refused.yaml", "--wait")
		require.Equal(t, exitFailed, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		require.Contains(t, r.stderr, "not steady")
		require.Contains(t, r.stdout, "pre-start: errors = ")
		require.Contains(t, r.stdout, "FAILED")
		require.Equal(t, 404, getCode(t, s.url+"/v1/experiments/gd-refused"))
		// An apply is refused the same way.
		r = s.ctl(t, "", "apply", "-f", dir+"/refused.yaml")
		require.Equal(t, exitFailed, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		require.Contains(t, r.stderr, "not steady")
		require.Equal(t, 404, getCode(t, s.url+"/v1/experiments/gd-refused"))

		r = s.ctl(t, "", "chaos", "run", "-f", dir+"/refused.yaml", "--force")
		require.Equal(t, exitOK, r.code, r.stderr)
		var got policies.ChaosExperiment
		getJSON(t, s.url+"/v1/experiments/gd-refused", &got)
		require.True(t, got.Status.Forced)
		require.False(t, got.Status.PreStart[0].OK)
		r = s.ctl(t, "", "chaos", "stop", "gd-refused")
		require.Equal(t, exitOK, r.code, r.stderr)
		pay.fail.Store(false)
	})

	t.Run("recommendations land within 10% of the p99", func(t *testing.T) {
		testRecommendations(t, s, inv, metrics, dir, promSrv.URL)
	})

	t.Run("circuit state in the audit", func(t *testing.T) {
		writeTestFile(t, dir, "fallback.yaml", "apiVersion: bulwark/v1\nkind: Service\nmetadata: {name: payments-static}\nspec: {protocol: grpc, port: 50053}\n---\n"+
			"apiVersion: bulwark/v1\nkind: ResiliencePolicy\nmetadata: {name: payments-fallback}\nspec: {target: {service: payments}, fallback: {service: payments-static}}\n")
		r := s.ctl(t, "", "apply", "-f", dir+"/fallback.yaml")
		require.Equal(t, exitOK, r.code, r.stderr)
		var rep api.AuditReport
		require.Eventually(t, func() bool {
			return getJSON(t, s.url+"/v1/audit?service=payments", &rep) == 200 && rep.Services[0].Circuit != nil &&
				rep.Services[0].Circuit.FallbackConfigured && rep.Services[0].Circuit.HostsEjected != nil
		}, 30*time.Second, 200*time.Millisecond)
		c := rep.Services[0].Circuit
		require.True(t, c.Known, c.Reason)
		require.Equal(t, 1.0, *c.HostsEjected)
		require.Equal(t, 0.0, *c.HealthyHosts)
		require.True(t, *c.FallbackServing)
		require.NotNil(t, c.RetryRate)
		require.NotNil(t, c.RetryOverflowRate)
		var other api.AuditReport
		getJSON(t, s.url+"/v1/audit?service=inventory", &other)
		require.False(t, other.Services[0].Circuit.FallbackConfigured)
		require.Nil(t, other.Services[0].Circuit.FallbackServing)
	})

	t.Run("prometheus stops mid-run: onUnknown abort stops it and status says why", func(t *testing.T) {
		require.Eventually(t, func() bool { v, ok := read(errorRatio); return ok && v < 0.05 }, 30*time.Second, 200*time.Millisecond)
		writeTestFile(t, dir, "blind.yaml", gameDay("gd-blind", "delay: {percent: 5, fixed: 10ms}", "2m", "onUnknown: abort"))
		r := s.ctl(t, "", "chaos", "run", "-f", dir+"/blind.yaml")
		require.Equal(t, exitOK, r.code, r.stderr)
		require.Eventually(t, func() bool {
			var e policies.ChaosExperiment
			return getJSON(t, s.url+"/v1/experiments/gd-blind", &e) == 200 && e.Status.Evaluations >= 1
		}, 30*time.Second, 100*time.Millisecond)
		promSrv.Stop()
		// Writes never wait on Prometheus.
		writeTestFile(t, dir, "policy.yaml", "apiVersion: bulwark/v1\nkind: ResiliencePolicy\nmetadata: {name: payments}\nspec: {target: {service: payments}, timeouts: {request: 2s}}\n")
		r = s.ctl(t, "", "apply", "-f", dir+"/policy.yaml")
		require.Equal(t, exitOK, r.code, r.stderr)
		require.Eventually(t, func() bool { return getCode(t, s.url+"/v1/experiments/gd-blind") == 404 }, 30*time.Second, 100*time.Millisecond)
		require.Eventually(t, func() bool {
			h := historyOf(t, s, "gd-blind")
			return h != nil && h.Status.Verdict != ""
		}, 10*time.Second, 100*time.Millisecond)
		st := historyOf(t, s, "gd-blind").Status
		require.Equal(t, policies.PhaseAborted, st.Phase)
		require.Equal(t, policies.VerdictAborted, st.Verdict)
		require.Contains(t, st.Reason, "could not be read")
		require.Contains(t, st.Reason, "onUnknown: abort")
		require.Equal(t, 2, st.Checks[0].Unknown)
		var rep api.StatusReport
		getJSON(t, s.url+"/v1/status", &rep)
		require.True(t, rep.Prometheus.Configured)
		require.False(t, rep.Prometheus.Up)
		require.Contains(t, rep.Prometheus.Error, "unreachable")
		var audit api.AuditReport
		require.Equal(t, 200, getJSON(t, s.url+"/v1/audit?service=payments", &audit))
		require.False(t, audit.Services[0].Circuit.Known)
		require.Contains(t, audit.Services[0].Circuit.Reason, "unreachable")
	})
}

func getCode(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	if resp.StatusCode == 200 {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
	}
	return resp.StatusCode
}

// serveEnvoyStats serves, in the names of Envoy's /stats/prometheus, the
// cluster statistics of a checkout sidecar whose only payments host is
// ejected: no Envoy runs in the tests, so these stand in for its admin
// endpoint; Prometheus scrapes them for real.
func serveEnvoyStats(t *testing.T) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	gauge := func(name string, v float64) {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: name}, []string{"envoy_cluster_name"})
		g.WithLabelValues("payments").Set(v)
		reg.MustRegister(g)
	}
	gauge("envoy_cluster_outlier_detection_ejections_active", 1)
	gauge("envoy_cluster_membership_healthy", 0)
	gauge("envoy_cluster_membership_total", 1)
	for _, name := range []string{"envoy_cluster_upstream_rq_retry", "envoy_cluster_upstream_rq_retry_overflow"} {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: name}, []string{"envoy_cluster_name"})
		c.WithLabelValues("payments").Add(3)
		reg.MustRegister(c)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return lis.Addr().String()
}
