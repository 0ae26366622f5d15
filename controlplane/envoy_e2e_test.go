package controlplane

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	aggregatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/aggregate/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/test/envoymodel"
)

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
