package controlplane

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/test/envoymodel"
)

// Callers that are neither a Service nor named by any policy's sources
// share one group, however many distinct node.cluster values they send (a
// client can send any); each still gets config. Once a Service is declared
// for one of them, its proxy moves to a group of its own.
func TestUnknownCallersShareOneGroup(t *testing.T) {
	h := newHarness(t)
	h.apply(envoyServices())
	const callers = 40
	models := make([]*envoymodel.Envoy, callers)
	for i := range callers {
		e := envoymodel.New(h.cp.XDSAddr(), envoymodel.Options{
			Mode: envoymodel.SotW, NodeID: fmt.Sprintf("stranger-%d", i), NodeCluster: fmt.Sprintf("stranger-%d", i),
			InitialFetchTimeout: envoyFetchTimeout,
		})
		require.NoError(t, e.Start())
		t.Cleanup(func() { _ = e.Close() })
		models[i] = e
	}
	for _, e := range models {
		waitEnvoy(t, e, "config for an unknown caller", settled(e, func(cfg envoymodel.Config) error {
			if _, ok := cfg.Clusters["payments"]; !ok {
				return fmt.Errorf("no payments cluster yet")
			}
			return nil
		}))
	}
	eventually(t, envoyWait, func() error {
		if n := proxyGroups(t, h); n != 1 {
			return fmt.Errorf("%d groups, want 1 shared by %d unknown callers", n, callers)
		}
		return nil
	})
	p, ok := h.cp.tracker.Proxy("stranger-0")
	require.True(t, ok)
	require.Equal(t, "envoy/"+xdsserver.UnknownCaller, p.Group)
	require.Equal(t, "stranger-0", p.Service, "status keeps the caller's own name")

	h.apply(serviceYAML("stranger-0", 19401))
	eventually(t, envoyWait, func() error {
		p, _ := h.cp.tracker.Proxy("stranger-0")
		if p.Group != "envoy/stranger-0" || !p.Converged {
			return fmt.Errorf("stranger-0 in group %s, converged %t", p.Group, p.Converged)
		}
		return nil
	})
	waitEnvoy(t, models[0], "its own group's config", settled(models[0], func(cfg envoymodel.Config) error {
		if _, ok := cfg.Clusters["stranger-0"]; !ok {
			return fmt.Errorf("no stranger-0 cluster")
		}
		return nil
	}))
	requireNoTimeouts(t, models[0])
}

var proxyGroupsLine = regexp.MustCompile(`(?m)^bulwark_proxy_groups (\S+)$`)

// proxyGroups reads bulwark_proxy_groups from /metrics.
func proxyGroups(t *testing.T, h *harness) int {
	t.Helper()
	_, body := h.get("/metrics")
	m := proxyGroupsLine.FindSubmatch(body)
	require.NotNil(t, m)
	v, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	return int(v)
}
