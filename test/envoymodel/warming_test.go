package envoymodel

import (
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const shortTimeout = 300 * time.Millisecond

// TestClusterChangeStallsOnContentVersionedEDS reproduces go-control-plane #245 /
// envoy #13009: only the cluster changes, so a content-versioned EDS keeps its version,
// Envoy's re-sent EDS request (same names, same version) is not answered, and the new
// cluster only leaves warming through initial_fetch_timeout, with no endpoints.
func TestClusterChangeStallsOnContentVersionedEDS(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			x := startServer(t)
			v1 := x.setContent(t, baseResources(time.Second))
			e := newModel(t, x, Options{Mode: m.mode, InitialFetchTimeout: shortTimeout})
			warmWith(t, e)
			cdsACKs := e.Stats().ByType[typeCluster].ACKs

			v2 := x.setContent(t, baseResources(2*time.Second))
			if v2[typeEndpoint] != v1[typeEndpoint] || v2[typeCluster] == v1[typeCluster] {
				t.Fatalf("fixture: versions %v -> %v", v1, v2)
			}
			waitFor(t, e, "cluster warmed by timeout", func() bool { return e.Stats().ClustersWarmedByTimeout == 1 })

			c := e.Config()
			if connectTimeout(c, "payments") != 2*time.Second || !c.Clusters["payments"].WarmedByTimeout {
				t.Fatalf("payments after timeout: %+v", c.Clusters["payments"])
			}
			if _, ok := c.Endpoints["payments"]; ok {
				t.Fatal("a cluster warmed by timeout has endpoints; Envoy serves it empty (503 UH)")
			}
			// The CDS ACK was held back while the cluster warmed and is sent now.
			waitFor(t, e, "CDS ACK", func() bool { return e.Stats().ByType[typeCluster].ACKs == cdsACKs+1 })

			if m.mode == SotW {
				// Envoy did ask again, with the same names and version.
				n := 0
				for _, r := range x.requests() {
					q := r.sotw
					if q.TypeUrl == typeEndpoint && q.VersionInfo == v1[typeEndpoint] &&
						strings.Join(q.ResourceNames, ",") == "payments" {
						n++
					}
				}
				if n < 2 {
					t.Fatalf("EDS re-request with unchanged names/version not seen (%d)", n)
				}
			}
		})
	}
}

// TestClusterChangeWithEDSResendWarms is the fix on the server side: a cluster change
// also sends its endpoints again, and the cluster warms without a timeout. In SotW a
// new EDS version is enough; in delta the server only sends a resource whose content
// hash changed, so the assignment itself must differ.
func TestClusterChangeWithEDSResendWarms(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			x := startServer(t)
			x.setVersion(t, "1", baseResources(time.Second))
			e := newModel(t, x, Options{Mode: m.mode}) // Envoy's default 15 s timeout
			warmWith(t, e)

			res := baseResources(2 * time.Second)
			if m.mode == Delta {
				res[typeEndpoint] = []types.Resource{withPolicy(assignment("payments", 8080))}
			}
			x.setVersion(t, "2", res)
			waitFor(t, e, "changed cluster active with endpoints", func() bool {
				c := e.Config()
				_, ok := c.Endpoints["payments"]
				return connectTimeout(c, "payments") == 2*time.Second && ok && e.AllWarm()
			})
			if s := e.Stats(); s.ClustersWarmedByTimeout != 0 || s.NACKs != 0 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// TestDeltaEDSVersionBumpAloneStillStalls shows why "bump the EDS version" is not a
// fix for delta: go-control-plane's delta versions are per-resource content hashes.
func TestDeltaEDSVersionBumpAloneStillStalls(t *testing.T) {
	x := startServer(t)
	x.setVersion(t, "1", baseResources(time.Second))
	e := newModel(t, x, Options{Mode: Delta, InitialFetchTimeout: shortTimeout})
	warmWith(t, e)
	x.setVersion(t, "2", baseResources(2*time.Second))
	waitFor(t, e, "cluster warmed by timeout", func() bool { return e.Stats().ClustersWarmedByTimeout == 1 })
}

func TestEDSCacheOnTimeoutKeepsEndpoints(t *testing.T) {
	x := startServer(t)
	x.setContent(t, baseResources(time.Second))
	e := newModel(t, x, Options{InitialFetchTimeout: shortTimeout, UseEDSCacheOnTimeout: true})
	warmWith(t, e)
	x.setContent(t, baseResources(2*time.Second))
	waitFor(t, e, "cluster warmed by timeout", func() bool { return e.Stats().ClustersWarmedByTimeout == 1 })
	if _, ok := e.Config().Endpoints["payments"]; !ok {
		t.Fatal("cached assignment not used")
	}
}

func withPolicy(cla *endpointv3.ClusterLoadAssignment) *endpointv3.ClusterLoadAssignment {
	cla.Policy = &endpointv3.ClusterLoadAssignment_Policy{OverprovisioningFactor: wrapperspb.UInt32(140)}
	return cla
}

// TestListenerWarmsUntilItsRoutesArrive covers LDS/RDS warming: a listener update that
// keeps its route name reuses the shared RDS subscription and is active at once; a new
// route name waits for RDS; a route the server never sends times out.
func TestListenerWarmsUntilItsRoutesArrive(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			x := startServer(t)
			x.setContent(t, baseResources(time.Second))
			e := newModel(t, x, Options{Mode: m.mode, InitialFetchTimeout: shortTimeout})
			warmWith(t, e)
			rdsRequests := e.Stats().ByType[typeRoute].Requests

			res := baseResources(time.Second)
			res[typeListener] = []types.Resource{httpListener("outbound", "outbound", "outbound_v2", 15001)}
			x.setContent(t, res)
			waitFor(t, e, "changed listener active", func() bool {
				return statPrefix(e.Config(), "outbound") == "outbound_v2" && e.AllWarm()
			})
			if s := e.Stats(); s.ByType[typeRoute].Requests != rdsRequests || s.ListenersWarmedByTimeout != 0 {
				t.Fatalf("a listener keeping its route name must not re-request RDS or time out: %+v", s)
			}

			res[typeListener] = append(res[typeListener], httpListener("admin", "admin", "admin", 15002))
			res[typeRoute] = append(res[typeRoute], routeConfig("admin", "payments"))
			x.setContent(t, res)
			waitFor(t, e, "new listener warm", func() bool {
				_, ok := e.Config().Listeners["admin"]
				return ok && e.AllWarm()
			})
			if s := e.Stats(); s.ListenersWarmedByTimeout != 0 || e.Config().Listeners["admin"].WarmedByTimeout {
				t.Fatalf("admin listener timed out: %+v", s)
			}

			res[typeListener] = append(res[typeListener], httpListener("orphan", "missing", "orphan", 15003))
			x.setContent(t, res)
			waitFor(t, e, "orphan listener warmed by timeout", func() bool { return e.Stats().ListenersWarmedByTimeout == 1 })
			c := e.Config()
			if !c.Listeners["orphan"].WarmedByTimeout || c.Listeners["admin"].WarmedByTimeout {
				t.Fatalf("listeners %+v", c.Listeners)
			}
		})
	}
}

func statPrefix(c Config, name string) string {
	r, ok := c.Listeners[name]
	if !ok {
		return ""
	}
	hcm := &hcmv3.HttpConnectionManager{}
	tc := r.Message.(*listenerv3.Listener).GetFilterChains()[0].GetFilters()[0].GetTypedConfig()
	if err := tc.UnmarshalTo(hcm); err != nil {
		return ""
	}
	return hcm.GetStatPrefix()
}
