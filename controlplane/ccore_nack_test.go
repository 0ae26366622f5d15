package controlplane

import (
	"fmt"
	"strings"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/xds/ir"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// gRPC C-core asks for route configurations one channel at a time. When
// it rejects the payments route configuration, its next channel's request
// (for payments and inventory) must still be answered: the rejection holds
// back what was rejected, not the whole version. Before, the guard held the
// whole version for the node, and inventory failed after 15 s with "does
// not exist".
func TestCCoreRejectedRouteDoesNotStarveTheOthers(t *testing.T) {
	h := newHarness(t)
	pay := startBackend(t, "payments-1", nil)
	inv := startBackend(t, "inventory-1", nil)
	// C-core 1.51 rejects a header matcher written as string_match.
	h.cp.builder.SetMutate(func(k xdsserver.GroupKey, res *translate.Resources) {
		if k.Flavor != ir.FlavorGRPC {
			return
		}
		for _, rc := range res.Routes {
			if rc.GetName() != "payments" {
				continue
			}
			for _, vh := range rc.GetVirtualHosts() {
				for _, r := range vh.GetRoutes() {
					r.Match.Headers = append(r.Match.Headers, &routev3.HeaderMatcher{
						Name: "x-poison",
						HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
							MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "1"}}},
					})
				}
			}
		}
	})
	defer h.cp.builder.SetMutate(nil)
	h.apply(serviceYAML("payments", pay.port) + "---\n" + serviceYAML("inventory", inv.port))

	c := h.startCCore("checkout")
	// The payments channel: its route configuration is rejected.
	eventually(t, 30*time.Second, func() error {
		p, ok := h.cp.tracker.Proxy(c.node)
		if !ok || p.Types["routes"] == nil || p.Types["routes"].LastNack == nil {
			c.call("payments", 3*time.Second, "x", nil)
			return fmt.Errorf("no route NACK from the C-core client yet")
		}
		return nil
	})
	p, _ := h.cp.tracker.Proxy(c.node)
	require.Contains(t, strings.ToLower(p.Types["routes"].LastNack.Error), "header matcher")

	// The inventory channel asks for more: it is answered and serves.
	eventually(t, 30*time.Second, func() error {
		r := c.call("inventory", 3*time.Second, "x", nil)
		if err := r.Err(); err != nil {
			return err
		}
		if r.Hostname != "inventory-1" {
			return fmt.Errorf("inventory served by %q", r.Hostname)
		}
		return nil
	})
}
