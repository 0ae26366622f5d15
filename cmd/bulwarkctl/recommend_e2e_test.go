package main

import (
	"encoding/json"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/prom/promtest"
	"github.com/bulwarkmesh/bulwark/policies"
)

// inventoryDelay is a known latency distribution: 97% of calls take 1ms,
// 3% are spread over 205–239ms, inside one bucket of gRPC's default
// latency histogram (200–250ms) with room for a loaded machine to
// oversleep.
func inventoryDelay(n int64) time.Duration {
	k := n % 100
	if k < 97 {
		return time.Millisecond
	}
	return time.Duration(205+((n/100)*7+(k-97)*11)%35) * time.Millisecond
}

// testRecommendations: checkout calls inventory, whose backend has a
// known latency distribution; the recommendation's observed p99 is within
// 10% of that distribution's p99, and its policy applies without a warning.
func testRecommendations(t *testing.T, s *server, inv *gameBackend, m *promtest.GRPCMetrics, meshDir, promURL string) {
	f := inventoryDelay
	inv.mu.Lock()
	inv.rec = true
	inv.mu.Unlock()
	inv.delay.Store(&f)

	// Too little data at first: no recommendation, and why.
	r := s.ctl(t, "", "recommend", "--service", "inventory", "--window", "1m", "-o", "json")
	require.Equal(t, exitOK, r.code, r.stderr)

	startTraffic(t, s.cp.XDSAddr(), "checkout", "inventory", m)
	// The 1m window must hold only calls made under the distribution: the
	// earlier subtests' fast calls to inventory would dilute its slow tail.
	onlyNew := time.Now().Add(time.Minute + 5*time.Second)
	var rep api.RecommendationReport
	var sawTooLittle bool
	require.Eventually(t, func() bool {
		r := s.ctl(t, "", "recommend", "--service", "inventory", "--window", "1m", "-o", "json")
		if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &rep) != nil || len(rep.Items) == 0 {
			return false
		}
		it := rep.Items[0]
		if it.Reason != "" && strings.Contains(it.Reason, "too little data") {
			sawTooLittle = true
		}
		return it.RecommendedRequest != "" && it.Requests >= 1000 && time.Now().After(onlyNew)
	}, 3*time.Minute, 500*time.Millisecond, "no recommendation for inventory: %+v", rep.Items)
	require.True(t, sawTooLittle || rep.Items[0].Requests >= 100, "the minimum request count was never reported")

	inv.mu.Lock()
	used := append([]time.Duration(nil), inv.used...)
	inv.mu.Unlock()
	sort.Slice(used, func(i, j int) bool { return used[i] < used[j] })
	want := float64(used[int(math.Ceil(0.99*float64(len(used))))-1]) / float64(time.Millisecond)

	it := rep.Items[0]
	require.Equal(t, "checkout", it.Caller)
	require.Equal(t, "grpc", it.Flavor)
	require.NotNil(t, it.P99Ms)
	t.Logf("inventory: %.0f calls, observed p50 %.1fms p99 %.1fms p99.9 %.1fms; the distribution's p99 %.1fms; recommended request timeout %s",
		it.Requests, *it.P50Ms, *it.P99Ms, *it.P999Ms, want, it.RecommendedRequest)
	require.InEpsilon(t, want, *it.P99Ms, 0.10, "observed p99 %.1fms, the distribution's %.1fms", *it.P99Ms, want)
	require.Less(t, *it.P50Ms, 10.0)
	require.Equal(t, "5s", it.ConfiguredRequest)
	rec, err := policies.ParseDuration(it.RecommendedRequest)
	require.NoError(t, err)
	require.GreaterOrEqual(t, rec.D(), time.Duration(2**it.P99Ms*float64(time.Millisecond)))
	require.Empty(t, it.RecommendedPerTry, "proxyless gRPC ignores perTryTimeout")
	// The mesh default of 5s is more than 10× the p99.9 of inventory.
	require.Len(t, rep.Findings, 1)
	require.Equal(t, "mesh-default", rep.Findings[0].Name)
	require.Contains(t, rep.Findings[0].Message, "p99.9")

	// Offline lint against the same Prometheus says the same.
	r = s.ctl(t, "", "lint", "-f", meshDir+"/mesh.yaml", "--prometheus-url", promURL, "--prometheus-window", "1m", "--min-severity", "warning")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "more than 10× the p99.9 latency observed for calls from checkout to inventory")

	// -o yaml is a policy that validates and applies without a warning.
	r = s.ctl(t, "", "recommend", "--service", "inventory", "--window", "1m", "-o", "yaml")
	require.Equal(t, exitOK, r.code, r.stderr)
	rs, err := policies.DecodeAll([]byte(r.stdout))
	require.NoError(t, err, r.stdout)
	require.Len(t, rs, 1)
	require.Empty(t, policies.Validate(rs[0], policies.ValidateOptions{}))
	require.Equal(t, "inventory", rs[0].GetMeta().Name)
	dir := t.TempDir()
	writeTestFile(t, dir, "rec.yaml", r.stdout)
	r = s.ctl(t, "", "apply", "-f", dir+"/rec.yaml")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.NotContains(t, r.stderr, "ResiliencePolicy inventory", "the recommended policy lints clean")
	inv.delay.Store(nil)
}
