package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	aggregatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/aggregate/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/test/envoymodel"
)

// End-to-end scenarios with the Envoy ADS behaviour model (test/envoymodel)
// as the proxy: it subscribes, ACKs and NACKs, and warms clusters and
// listeners the way Envoy does. Each policy section is changed live on a
// connected, warm Envoy of checkout, over SotW and delta, and the change
// must become active without any cluster or listener waiting for
// initial_fetch_timeout (a cluster that warms by timeout serves no
// endpoints). The model's timeout is 20 s, so a stall (which lasts
// forever without the timeout) shows up as a flag
// (Stats().ClustersWarmedByTimeout) inside the 60 s waits, while a slow,
// loaded machine does not.

const (
	envoyFetchTimeout = 20 * time.Second
	envoyWait         = 60 * time.Second
	faultFilter       = "envoy.filters.http.fault"
)

var envoyModes = []struct {
	name string
	mode envoymodel.Mode
}{{"SotW", envoymodel.SotW}, {"Delta", envoymodel.Delta}}

// envoyServices are checkout (the caller the model belongs to), payments
// and two fallback candidates, all with loopback endpoints; the model
// sends no traffic, so nothing needs to listen on them.
func envoyServices() string {
	return serviceYAML("checkout", 19001) + "---\n" +
		serviceYAML("payments", 19101, 19102) + "---\n" +
		serviceYAML("payments-static", 19201) + "---\n" +
		serviceYAML("payments-backup", 19301)
}

// envoyPolicy is the ResiliencePolicy "payments" with the given spec
// lines (each indented by two spaces) after its target.
func envoyPolicy(body string) string {
	return "apiVersion: bulwark/v1\nkind: ResiliencePolicy\nmetadata: {name: payments}\nspec:\n  target: {service: payments}\n" + body
}

// startEnvoy connects a model of an Envoy of checkout and closes it at the
// end of the test.
func startEnvoy(t *testing.T, h *harness, mode envoymodel.Mode, reject func(typeURL, name string, m proto.Message) error) (*envoymodel.Envoy, string) {
	t.Helper()
	id := fmt.Sprintf("checkout-envoy-%d", nodeSeq.Add(1))
	e := envoymodel.New(h.cp.XDSAddr(), envoymodel.Options{
		Mode: mode, NodeID: id, NodeCluster: "checkout",
		InitialFetchTimeout: envoyFetchTimeout, Reject: reject,
	})
	require.NoError(t, e.Start())
	t.Cleanup(func() { _ = e.Close() })
	return e, id
}

// waitEnvoy waits, on the model's own change notifications, until cond
// returns nil; it fails the test with cond's last error.
func waitEnvoy(t *testing.T, e *envoymodel.Envoy, what string, cond func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), envoyWait)
	defer cancel()
	last := errors.New("never evaluated")
	if err := e.Wait(ctx, func() bool {
		last = cond()
		return last == nil
	}); err != nil {
		t.Fatalf("%s: not reached within %s: %v (warming clusters %v, listeners %v, stats %s, stream error %v)",
			what, envoyWait, last, e.WarmingClusters(), e.WarmingListeners(), statsLine(e.Stats()), e.Err())
	}
}

func statsLine(s envoymodel.Stats) string {
	return fmt.Sprintf("{clustersWarmedByTimeout:%d listenersWarmedByTimeout:%d responses:%d acks:%d nacks:%d lastNACK:%q}",
		s.ClustersWarmedByTimeout, s.ListenersWarmedByTimeout, s.Responses, s.ACKs, s.NACKs, s.LastNACK)
}

// settled is the end state every scenario must reach: initialized, nothing
// warming, and check holding on the active config.
func settled(e *envoymodel.Envoy, check func(envoymodel.Config) error) func() error {
	return func() error {
		if err := e.Err(); err != nil {
			return fmt.Errorf("stream broken: %w", err)
		}
		if err := check(e.Config()); err != nil {
			return err
		}
		if !e.AllWarm() {
			return fmt.Errorf("not warm: clusters %v, listeners %v warming", e.WarmingClusters(), e.WarmingListeners())
		}
		return nil
	}
}

// requireNoTimeouts fails if anything became active only because
// initial_fetch_timeout fired, or if payments lost its endpoints.
func requireNoTimeouts(t *testing.T, e *envoymodel.Envoy) {
	t.Helper()
	s := e.Stats()
	cfg := e.Config()
	var late []string
	for name, r := range cfg.Clusters {
		if r.WarmedByTimeout {
			late = append(late, "cluster "+name+" version "+r.Version)
		}
	}
	for name, r := range cfg.Listeners {
		if r.WarmedByTimeout {
			late = append(late, "listener "+name+" version "+r.Version)
		}
	}
	require.Zero(t, s.ClustersWarmedByTimeout, "clusters warmed by initial_fetch_timeout %v (%v)", late, statsLine(s))
	require.Zero(t, s.ListenersWarmedByTimeout, "listeners warmed by initial_fetch_timeout %v (%v)", late, statsLine(s))
	require.Empty(t, late, "active by timeout")
	require.NoError(t, paymentsEndpoints(cfg), "payments must keep its endpoints")
}

func paymentsEndpoints(cfg envoymodel.Config) error {
	r, ok := cfg.Endpoints["payments"]
	if !ok {
		return errors.New("active payments cluster has no load assignment")
	}
	n := 0
	for _, l := range r.Message.(*endpointv3.ClusterLoadAssignment).GetEndpoints() {
		n += len(l.GetLbEndpoints())
	}
	if n != 2 {
		return fmt.Errorf("payments has %d endpoints, want 2", n)
	}
	return nil
}

func activeCluster(cfg envoymodel.Config, name string) (*clusterv3.Cluster, error) {
	r, ok := cfg.Clusters[name]
	if !ok {
		return nil, fmt.Errorf("no active cluster %s", name)
	}
	return r.Message.(*clusterv3.Cluster), nil
}

// paymentsRoute is the catch-all route of the payments virtual host in the
// outbound route configuration.
func paymentsRoute(cfg envoymodel.Config) (*routev3.Route, error) {
	r, ok := cfg.Routes["outbound"]
	if !ok {
		return nil, errors.New("no route configuration outbound")
	}
	for _, vh := range r.Message.(*routev3.RouteConfiguration).GetVirtualHosts() {
		if vh.GetName() != "payments" {
			continue
		}
		for _, rt := range vh.GetRoutes() {
			if rt.GetMatch().GetPrefix() == "/" {
				return rt, nil
			}
		}
		return nil, errors.New("payments virtual host has no / route")
	}
	return nil, errors.New("outbound has no payments virtual host")
}

// waitConverged waits until GET /v1/proxies shows the model's node as
// converged and not rejecting, and GET /v1/status counts every proxy as
// converged.
func waitConverged(t *testing.T, h *harness, node string) {
	t.Helper()
	eventually(t, envoyWait, func() error {
		p, err := proxyFromAPI(h, node)
		if err != nil {
			return err
		}
		if !p.Converged || p.Rejecting() {
			return fmt.Errorf("proxy %s converged=%v rejecting=%v: %s", node, p.Converged, p.Rejecting(), typesLine(p))
		}
		r := h.statusReport().Rollout
		if r.Total < 1 || r.Converged != r.Total || r.Rejecting != 0 {
			return fmt.Errorf("rollout %+v; proxies: %s", r, proxiesLine(h))
		}
		return nil
	})
}

func proxyFromAPI(h *harness, node string) (api.ProxyStatus, error) {
	code, body := h.get("/v1/proxies")
	if code != 200 {
		return api.ProxyStatus{}, fmt.Errorf("GET /v1/proxies: %d %s", code, body)
	}
	var list api.ProxyList
	if err := json.Unmarshal(body, &list); err != nil {
		return api.ProxyStatus{}, err
	}
	for _, p := range list.Items {
		if p.ID == node {
			return p, nil
		}
	}
	return api.ProxyStatus{}, fmt.Errorf("proxy %s not in /v1/proxies", node)
}

func proxiesLine(h *harness) string {
	_, body := h.get("/v1/proxies")
	var list api.ProxyList
	if err := json.Unmarshal(body, &list); err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range list.Items {
		fmt.Fprintf(&b, "[%s %s converged=%v %s] ", p.ID, p.Protocol, p.Converged, typesLine(p))
	}
	return b.String()
}

func typesLine(p api.ProxyStatus) string {
	var b strings.Builder
	for name, ts := range p.Types {
		fmt.Fprintf(&b, "%s{sent:%s acked:%s", name, ts.Sent, ts.Acked)
		if ts.LastNack != nil {
			fmt.Fprintf(&b, " nack:%s %q", ts.LastNack.Version, ts.LastNack.Error)
		}
		b.WriteString("} ")
	}
	return b.String()
}

// envoySection is one policy section changed live: apply(h, v) writes value
// v of it (0 before any proxy connects, then 1 under SotW, 2 under delta),
// check(cfg, v) says whether an Envoy's active config carries value v.
type envoySection struct {
	name  string
	apply func(h *harness, v int)
	check func(cfg envoymodel.Config, v int) error
}

func policySection(name string, body func(v int) string, check func(cfg envoymodel.Config, v int) error) envoySection {
	return envoySection{
		name:  name,
		apply: func(h *harness, v int) { h.apply(envoyPolicy(body(v))) },
		check: check,
	}
}

func clusterCheck(f func(c *clusterv3.Cluster, v int) error) func(envoymodel.Config, int) error {
	return func(cfg envoymodel.Config, v int) error {
		c, err := activeCluster(cfg, "payments")
		if err != nil {
			return err
		}
		return f(c, v)
	}
}

func routeCheck(f func(ra *routev3.RouteAction, v int) error) func(envoymodel.Config, int) error {
	return func(cfg envoymodel.Config, v int) error {
		rt, err := paymentsRoute(cfg)
		if err != nil {
			return err
		}
		return f(rt.GetRoute(), v)
	}
}

func wantDuration(field string, got interface{ AsDuration() time.Duration }, want time.Duration) error {
	var d time.Duration
	if got != nil {
		d = got.AsDuration()
	}
	if d != want {
		return fmt.Errorf("%s = %s, want %s", field, d, want)
	}
	return nil
}

func defaultThresholds(c *clusterv3.Cluster) *clusterv3.CircuitBreakers_Thresholds {
	for _, th := range c.GetCircuitBreakers().GetThresholds() {
		if th.GetPriority() == 0 { // DEFAULT
			return th
		}
	}
	return nil
}

func envoySections() []envoySection {
	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	return []envoySection{
		policySection("timeouts.connect",
			func(v int) string { return fmt.Sprintf("  timeouts: {connect: %ds, request: 3s}\n", 1+v) },
			clusterCheck(func(c *clusterv3.Cluster, v int) error {
				if c.GetConnectTimeout() == nil {
					return errors.New("connect_timeout unset")
				}
				return wantDuration("connect_timeout", c.GetConnectTimeout(), sec(1+v))
			})),
		policySection("timeouts.request",
			func(v int) string { return fmt.Sprintf("  timeouts: {request: %ds}\n", 3+v) },
			routeCheck(func(ra *routev3.RouteAction, v int) error {
				return wantDuration("route timeout", ra.GetTimeout(), sec(3+v))
			})),
		policySection("timeouts.idle",
			func(v int) string { return fmt.Sprintf("  timeouts: {request: 3s, idle: %ds}\n", 60+v) },
			routeCheck(func(ra *routev3.RouteAction, v int) error {
				return wantDuration("route idle_timeout", ra.GetIdleTimeout(), sec(60+v))
			})),
		policySection("retries.attempts",
			func(v int) string {
				return fmt.Sprintf("  retries: {attempts: %d, on: [5xx], methods: [GET], backoff: {base: 25ms, max: 250ms}, budget: {percent: 20}}\n", 1+v)
			},
			routeCheck(func(ra *routev3.RouteAction, v int) error {
				if got := ra.GetRetryPolicy().GetNumRetries().GetValue(); got != uint32(1+v) {
					return fmt.Errorf("retry_policy.num_retries = %d, want %d", got, 1+v)
				}
				return nil
			})),
		policySection("retries.perTryTimeout",
			func(v int) string {
				return fmt.Sprintf("  timeouts: {request: 10s}\n  retries: {attempts: 2, perTryTimeout: %ds, on: [5xx], methods: [GET], backoff: {base: 25ms, max: 250ms}, budget: {percent: 20}}\n", 1+v)
			},
			routeCheck(func(ra *routev3.RouteAction, v int) error {
				return wantDuration("retry_policy.per_try_timeout", ra.GetRetryPolicy().GetPerTryTimeout(), sec(1+v))
			})),
		policySection("retries.backoff",
			func(v int) string {
				return fmt.Sprintf("  retries: {attempts: 2, on: [5xx], methods: [GET], backoff: {base: %dms, max: 250ms}, budget: {percent: 20}}\n", 25+5*v)
			},
			routeCheck(func(ra *routev3.RouteAction, v int) error {
				bo := ra.GetRetryPolicy().GetRetryBackOff()
				if err := wantDuration("retry_back_off.max_interval", bo.GetMaxInterval(), ms(250)); err != nil {
					return err
				}
				return wantDuration("retry_back_off.base_interval", bo.GetBaseInterval(), ms(25+5*v))
			})),
		policySection("retries.budget",
			func(v int) string {
				return fmt.Sprintf("  retries: {attempts: 2, on: [5xx], methods: [GET], backoff: {base: 25ms, max: 250ms}, budget: {percent: %d, minConcurrency: 3}}\n", 20+v)
			},
			clusterCheck(func(c *clusterv3.Cluster, v int) error {
				rb := defaultThresholds(c).GetRetryBudget()
				if got := rb.GetBudgetPercent().GetValue(); got != float64(20+v) {
					return fmt.Errorf("retry_budget.budget_percent = %v, want %d", got, 20+v)
				}
				if got := rb.GetMinRetryConcurrency().GetValue(); got != 3 {
					return fmt.Errorf("retry_budget.min_retry_concurrency = %d, want 3", got)
				}
				return nil
			})),
		policySection("circuitBreaker",
			func(v int) string {
				return fmt.Sprintf("  circuitBreaker: {consecutive5xx: %d, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}\n", 5+v)
			},
			clusterCheck(func(c *clusterv3.Cluster, v int) error {
				od := c.GetOutlierDetection()
				if got := od.GetConsecutive_5Xx().GetValue(); got != uint32(5+v) {
					return fmt.Errorf("outlier_detection.consecutive_5xx = %d, want %d", got, 5+v)
				}
				return wantDuration("outlier_detection.base_ejection_time", od.GetBaseEjectionTime(), sec(30))
			})),
		policySection("bulkhead",
			func(v int) string {
				return fmt.Sprintf("  bulkhead: {maxConnections: %d, maxPendingRequests: 50, maxRequests: %d, maxRetries: 3}\n", 100+v, 200+v)
			},
			clusterCheck(func(c *clusterv3.Cluster, v int) error {
				th := defaultThresholds(c)
				if got := th.GetMaxConnections().GetValue(); got != uint32(100+v) {
					return fmt.Errorf("circuit_breakers max_connections = %d, want %d", got, 100+v)
				}
				if got := th.GetMaxRequests().GetValue(); got != uint32(200+v) {
					return fmt.Errorf("circuit_breakers max_requests = %d, want %d", got, 200+v)
				}
				return nil
			})),
		policySection("healthCheck",
			func(v int) string {
				return fmt.Sprintf("  healthCheck: {http: {path: /health/ready, expectedStatuses: [200]}, interval: %ds, timeout: 1s, unhealthyThreshold: 3, healthyThreshold: 2}\n", 5+v)
			},
			clusterCheck(func(c *clusterv3.Cluster, v int) error {
				if len(c.GetHealthChecks()) != 1 {
					return fmt.Errorf("%d health_checks, want 1", len(c.GetHealthChecks()))
				}
				hc := c.GetHealthChecks()[0]
				if hc.GetHttpHealthCheck().GetPath() != "/health/ready" {
					return fmt.Errorf("health check path %q", hc.GetHttpHealthCheck().GetPath())
				}
				return wantDuration("health_checks[0].interval", hc.GetInterval(), sec(5+v))
			})),
		policySection("fallback",
			func(v int) string {
				switch v {
				case 0:
					return "  timeouts: {request: 3s}\n"
				case 1:
					return "  timeouts: {request: 3s}\n  fallback: {service: payments-static}\n"
				default:
					return "  timeouts: {request: 3s}\n  fallback: {service: payments-backup}\n"
				}
			},
			checkFallback),
		{name: "chaos", apply: applyChaos, check: checkChaos},
	}
}

// checkFallback: without a fallback the route targets payments; with one,
// the aggregate cluster payments~fallback = [payments, fallback].
func checkFallback(cfg envoymodel.Config, v int) error {
	rt, err := paymentsRoute(cfg)
	if err != nil {
		return err
	}
	got := rt.GetRoute().GetCluster()
	if v == 0 {
		if got != "payments" {
			return fmt.Errorf("route cluster %q, want payments", got)
		}
		return nil
	}
	if got != "payments~fallback" {
		return fmt.Errorf("route cluster %q, want payments~fallback", got)
	}
	agg, err := activeCluster(cfg, "payments~fallback")
	if err != nil {
		return err
	}
	if n := agg.GetClusterType().GetName(); n != "envoy.clusters.aggregate" {
		return fmt.Errorf("payments~fallback cluster type %q", n)
	}
	var ac aggregatev3.ClusterConfig
	if err := agg.GetClusterType().GetTypedConfig().UnmarshalTo(&ac); err != nil {
		return err
	}
	want := []string{"payments", map[int]string{1: "payments-static", 2: "payments-backup"}[v]}
	if strings.Join(ac.GetClusters(), ",") != strings.Join(want, ",") {
		return fmt.Errorf("aggregate clusters %v, want %v", ac.GetClusters(), want)
	}
	for _, name := range want {
		if _, err := activeCluster(cfg, name); err != nil {
			return err
		}
	}
	return nil
}

// applyChaos: 0 no experiment; 1 payments-abort (10% 503); 2 payments-abort
// stopped and payments-delay (5% delayed 2s) started. It starts and stops
// only what differs from the running set, so applying a value twice is a
// no-op.
func applyChaos(h *harness, v int) {
	h.apply(envoyPolicy("  timeouts: {request: 3s}\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, x := range []struct {
		name, fault string
		want        bool
	}{
		{"payments-abort", "abort: {percent: 10, httpStatus: 503}", v == 1},
		{"payments-delay", "delay: {percent: 5, fixed: 2s}", v == 2},
	} {
		_, err := h.store.Get(ctx, policies.KindExperiment, x.name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			require.NoError(h.t, err)
		}
		running := err == nil
		switch {
		case running && !x.want:
			require.NoError(h.t, h.store.StopExperiment(ctx, x.name, "test"))
		case !running && x.want:
			h.apply("apiVersion: bulwark/v1\nkind: ChaosExperiment\nmetadata: {name: " + x.name +
				"}\nspec:\n  target: {service: payments}\n  sources: [checkout]\n  " + x.fault + "\n  duration: 10m\n")
		}
	}
}

func checkChaos(cfg envoymodel.Config, v int) error {
	if err := listenerHasFaultFilter(cfg); err != nil {
		return err
	}
	rt, err := paymentsRoute(cfg)
	if err != nil {
		return err
	}
	a, ok := rt.GetTypedPerFilterConfig()[faultFilter]
	if v == 0 {
		if ok {
			return errors.New("payments route has a fault config with no experiment")
		}
		return nil
	}
	if !ok {
		return errors.New("payments route has no typed_per_filter_config for the fault filter")
	}
	var f faultv3.HTTPFault
	if err := a.UnmarshalTo(&f); err != nil {
		return err
	}
	switch v {
	case 1:
		if f.GetAbort().GetHttpStatus() != 503 || f.GetAbort().GetPercentage().GetNumerator() != 100000 || f.GetDelay() != nil {
			return fmt.Errorf("fault %v, want abort 503 at 10%% and no delay", &f)
		}
	case 2:
		if f.GetAbort() != nil || f.GetDelay().GetPercentage().GetNumerator() != 50000 {
			return fmt.Errorf("fault %v, want delay at 5%% and no abort", &f)
		}
		if err := wantDuration("fault delay", f.GetDelay().GetFixedDelay(), 2*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// listenerHasFaultFilter: the outbound listener's HCM runs the fault filter
// before the router.
func listenerHasFaultFilter(cfg envoymodel.Config) error {
	r, ok := cfg.Listeners["outbound"]
	if !ok {
		return errors.New("no active listener outbound")
	}
	for _, fc := range r.Message.(*listenerv3.Listener).GetFilterChains() {
		for _, nf := range fc.GetFilters() {
			var hcm hcmv3.HttpConnectionManager
			if nf.GetTypedConfig().UnmarshalTo(&hcm) != nil {
				continue
			}
			var names []string
			for _, hf := range hcm.GetHttpFilters() {
				names = append(names, hf.GetName())
			}
			if len(names) < 2 || names[0] != faultFilter || names[len(names)-1] != "envoy.filters.http.router" {
				return fmt.Errorf("HTTP filters %v, want the fault filter first and the router last", names)
			}
			return nil
		}
	}
	return errors.New("outbound listener has no HTTP connection manager")
}

// Every policy section, changed live on a warm Envoy, becomes active with
// nothing warmed by timeout, and the proxy shows as converged.
func TestEnvoyPolicySections(t *testing.T) {
	for _, s := range envoySections() {
		t.Run(s.name, func(t *testing.T) {
			h := newHarness(t)
			h.apply(envoyServices())
			s.apply(h, 0)
			for i, m := range envoyModes {
				v := i + 1
				t.Run(m.name, func(t *testing.T) {
					parent := h.t
					h.t = t
					t.Cleanup(func() { h.t = parent })
					s.apply(h, v-1) // where the previous mode left it; unchanged content pushes nothing
					e, node := startEnvoy(t, h, m.mode, nil)
					waitEnvoy(t, e, "initial config", settled(e, func(cfg envoymodel.Config) error { return s.check(cfg, v-1) }))
					requireNoTimeouts(t, e)
					waitConverged(t, h, node)

					s.apply(h, v)
					waitEnvoy(t, e, s.name+" change", settled(e, func(cfg envoymodel.Config) error { return s.check(cfg, v) }))
					requireNoTimeouts(t, e)
					waitConverged(t, h, node)
					require.Zero(t, e.Stats().NACKs, "no response may be rejected: %s", e.Stats().LastNACK)
				})
			}
		})
	}
}

// A cluster the Envoy rejects is recorded in /v1/proxies with the Envoy's
// error text; the Envoy keeps its last good config; the server does not
// send the rejected version again (go-control-plane's cache would, in a
// loop); the next different version is accepted.
func TestEnvoyNACK(t *testing.T) {
	const refusal = "payments: consecutive_5xx 7 refused by this proxy"
	circuitBreaker := func(n int) string {
		return envoyPolicy(fmt.Sprintf("  timeouts: {request: 3s}\n  circuitBreaker: {consecutive5xx: %d, interval: 10s, baseEjectionTime: 30s}\n", n))
	}
	consecutive5xx := func(n uint32) func(envoymodel.Config) error {
		return func(cfg envoymodel.Config) error {
			c, err := activeCluster(cfg, "payments")
			if err != nil {
				return err
			}
			if got := c.GetOutlierDetection().GetConsecutive_5Xx().GetValue(); got != n {
				return fmt.Errorf("payments consecutive_5xx = %d, want %d", got, n)
			}
			return nil
		}
	}
	for _, m := range envoyModes {
		t.Run(m.name, func(t *testing.T) {
			h := newHarness(t)
			h.apply(envoyServices() + "---\n" + circuitBreaker(5))
			e, node := startEnvoy(t, h, m.mode, func(typeURL, name string, msg proto.Message) error {
				if typeURL == resourcev3.ClusterType && name == "payments" &&
					msg.(*clusterv3.Cluster).GetOutlierDetection().GetConsecutive_5Xx().GetValue() == 7 {
					return errors.New(refusal)
				}
				return nil
			})
			waitEnvoy(t, e, "initial config", settled(e, consecutive5xx(5)))
			waitConverged(t, h, node)
			good := e.Config().Clusters["payments"].Version

			h.apply(circuitBreaker(7))
			waitEnvoy(t, e, "the NACK", func() error {
				if e.Stats().ByType[resourcev3.ClusterType].NACKs == 0 {
					return errors.New("no cluster response rejected yet")
				}
				return nil
			})
			atNACK := e.Stats().ByType[resourcev3.ClusterType].Responses
			resent := func() int { return e.Stats().ByType[resourcev3.ClusterType].Responses - atNACK }
			eventually(t, envoyWait, func() error {
				if n := resent(); n > 3 {
					t.Fatalf("%d cluster responses after the NACK: the rejected version is being resent", n)
				}
				p, err := proxyFromAPI(h, node)
				if err != nil {
					return err
				}
				ts := p.Types["clusters"]
				if ts == nil || ts.LastNack == nil {
					return fmt.Errorf("no cluster NACK recorded: %s", typesLine(p))
				}
				if !strings.Contains(ts.LastNack.Error, refusal) {
					return fmt.Errorf("NACK error %q does not carry the proxy's text %q", ts.LastNack.Error, refusal)
				}
				if !p.Rejecting() || p.Converged {
					return fmt.Errorf("proxy rejecting=%v converged=%v, want rejecting and not converged", p.Rejecting(), p.Converged)
				}
				if r := h.statusReport().Rollout; r.Rejecting != 1 {
					return fmt.Errorf("rollout %+v, want one rejecting proxy", r)
				}
				return nil
			})
			require.LessOrEqual(t, resent(), 3, "cluster responses after the NACK")
			require.Equal(t, 1, e.Stats().ByType[resourcev3.ClusterType].NACKs, "the rejected version was sent more than once")
			require.NoError(t, settled(e, consecutive5xx(5))(), "the proxy keeps its last good config")
			require.Equal(t, good, e.Config().Clusters["payments"].Version)
			requireNoTimeouts(t, e)

			h.apply(circuitBreaker(9))
			waitEnvoy(t, e, "the next good version", settled(e, consecutive5xx(9)))
			requireNoTimeouts(t, e)
			waitConverged(t, h, node)
			require.Equal(t, 1, e.Stats().NACKs, "only the bad version is rejected")
		})
	}
}

// An Envoy whose stream breaks reconnects and resumes from its versions:
// it ends warm with the same config and versions, nothing by timeout, and
// a change after the reconnect still arrives.
func TestEnvoyReconnect(t *testing.T) {
	policy := func(n int) string {
		return envoyPolicy(fmt.Sprintf("  timeouts: {request: 3s}\n  circuitBreaker: {consecutive5xx: %d}\n  fallback: {service: payments-static}\n", n))
	}
	for _, m := range envoyModes {
		t.Run(m.name, func(t *testing.T) {
			h := newHarness(t)
			h.apply(envoyServices() + "---\n" + policy(5))
			e, node := startEnvoy(t, h, m.mode, nil)
			check := func(n uint32) func(envoymodel.Config) error {
				return func(cfg envoymodel.Config) error {
					if err := checkFallback(cfg, 1); err != nil {
						return err
					}
					c, err := activeCluster(cfg, "payments")
					if err != nil {
						return err
					}
					if got := c.GetOutlierDetection().GetConsecutive_5Xx().GetValue(); got != n {
						return fmt.Errorf("payments consecutive_5xx = %d, want %d", got, n)
					}
					return nil
				}
			}
			waitEnvoy(t, e, "initial config", settled(e, check(5)))
			waitConverged(t, h, node)
			before := versions(e.Config())
			requests := e.Stats().Requests

			require.NoError(t, e.Reconnect())
			waitEnvoy(t, e, "resubscribed", func() error {
				// CDS, EDS, LDS and RDS are each requested again on the new stream.
				if n := e.Stats().Requests - requests; n < 4 {
					return fmt.Errorf("%d requests since the reconnect", n)
				}
				return settled(e, check(5))()
			})
			waitConverged(t, h, node)
			require.Equal(t, before, versions(e.Config()), "versions after the reconnect")
			requireNoTimeouts(t, e)
			require.Zero(t, e.Stats().NACKs)

			h.apply(policy(6))
			waitEnvoy(t, e, "a change after the reconnect", settled(e, check(6)))
			requireNoTimeouts(t, e)
			waitConverged(t, h, node)
		})
	}
}

// versions lists every active resource with its version.
func versions(cfg envoymodel.Config) map[string]string {
	out := map[string]string{}
	for kind, rs := range map[string]map[string]envoymodel.Resource{
		"cluster": cfg.Clusters, "endpoints": cfg.Endpoints, "listener": cfg.Listeners, "route": cfg.Routes,
	} {
		for name, r := range rs {
			out[kind+"/"+name] = r.Version
		}
	}
	return out
}
