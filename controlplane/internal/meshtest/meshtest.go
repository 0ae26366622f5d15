// Package meshtest builds the synthetic meshes that the control plane's
// tests and benchmarks share: n services, each with two endpoints and a
// policy, as the fleet simulator seeds them.
package meshtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds"
	"github.com/bulwarkmesh/bulwark/xds/ir"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// MeshSet is n services with two endpoints and a policy each, as the fleet
// simulator seeds them.
func MeshSet(n int) *policies.Set {
	set := policies.NewSet()
	d := policies.Dur
	for i := range n {
		name := fmt.Sprintf("svc-%05d", i)
		set.Add(&policies.Service{
			TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindService},
			Metadata: policies.Metadata{Name: name},
			Spec: policies.ServiceSpec{Protocol: policies.ProtocolHTTP, Port: 8080, Endpoints: []policies.Endpoint{
				{Address: fmt.Sprintf("10.%d.%d.10", i/256%256, i%256), Port: 8080, Zone: "z1", Weight: 1},
				{Address: fmt.Sprintf("10.%d.%d.11", i/256%256, i%256), Port: 8080, Zone: "z2", Weight: 1},
			}},
		})
		set.Add(&policies.ResiliencePolicy{
			TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindPolicy},
			Metadata: policies.Metadata{Name: name},
			Spec: policies.PolicySpec{
				Target:   policies.Target{Service: name},
				Timeouts: &policies.Timeouts{Connect: d(time.Second), Request: d(3 * time.Second)},
				Retries: &policies.Retries{
					Attempts: policies.Ptr(2), PerTryTimeout: d(time.Second), On: []string{"5xx", "reset"},
					Methods: []string{"GET"}, Backoff: &policies.Backoff{Base: d(25 * time.Millisecond), Max: d(250 * time.Millisecond)},
					Budget: &policies.Budget{Percent: policies.Ptr(20.0), MinConcurrency: policies.Ptr(3)},
				},
				CircuitBreaker: &policies.CircuitBreaker{Consecutive5xx: policies.Ptr(5), Interval: d(10 * time.Second), BaseEjectionTime: d(30 * time.Second), MaxEjectionPercent: policies.Ptr(50)},
				Bulkhead:       &policies.Bulkhead{MaxConnections: policies.Ptr(100), MaxPendingRequests: policies.Ptr(50), MaxRequests: policies.Ptr(200)},
			},
		})
	}
	return set
}

// RenderMesh renders MeshSet(n) for the Envoy sidecars of svc-00000.
func RenderMesh(tb testing.TB, n int) *translate.Resources {
	tb.Helper()
	res, errs := xds.Render(MeshSet(n), ir.FlavorEnvoy, "svc-00000")
	require.Empty(tb, errs)
	require.NotNil(tb, res)
	return res
}
