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
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
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
