package translate

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// circuitBreakers maps bulkhead (the connection pool limits Envoy calls
// "circuit breakers") and the retry budget into the DEFAULT priority's
// thresholds. gRPC reads max_requests only. max_requests_per_connection
// lives in the protocol options (cluster.go).
func circuitBreakers(flavor ir.Flavor, cl *ir.ClusterPolicy) *clusterv3.CircuitBreakers {
	t := &clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_DEFAULT}
	set := false
	if b := cl.Bulkhead; b != nil {
		if b.MaxRequests != nil {
			t.MaxRequests, set = u32(*b.MaxRequests), true
		}
		if flavor == ir.FlavorEnvoy {
			if b.MaxConnections != nil {
				t.MaxConnections, set = u32(*b.MaxConnections), true
			}
			if b.MaxPendingRequests != nil {
				t.MaxPendingRequests, set = u32(*b.MaxPendingRequests), true
			}
			if b.MaxRetries != nil {
				t.MaxRetries, set = u32(*b.MaxRetries), true
			}
		}
	}
	if rb := cl.RetryBudget; rb != nil && flavor == ir.FlavorEnvoy {
		budget := &clusterv3.CircuitBreakers_Thresholds_RetryBudget{}
		if rb.Percent != nil {
			budget.BudgetPercent = &typev3.Percent{Value: *rb.Percent}
		}
		if rb.MinConcurrency != nil {
			budget.MinRetryConcurrency = u32(*rb.MinConcurrency)
		}
		t.RetryBudget, set = budget, true
	}
	if !set {
		return nil
	}
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{t}}
}
