package translate

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// checkGRPC applies the rules proxyless gRPC's xDS client enforces beyond
// ValidateAll, so a resource it would NACK never leaves: num_retries of at
// least 1 and positive backoff; EDS over ADS; an lb_policy gRPC knows on
// every cluster (so never CLUSTER_PROVIDED); a LOGICAL_DNS cluster with
// exactly one locality and one endpoint; localities with an ID and a
// weight (gRPC ignores a locality of weight 0, dropping its hosts), hosts
// of weight at least 1 and no address twice; outlier percentages at most 100.
func checkGRPC(r *Resources) error {
	var errs []error
	for _, rc := range r.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			for i, rt := range vh.GetRoutes() {
				if err := checkGRPCRetry(rt.GetRoute().GetRetryPolicy()); err != nil {
					errs = append(errs, fmt.Errorf("route configuration %s: virtual host %s: routes[%d]: %w", rc.GetName(), vh.GetName(), i, err))
				}
			}
		}
	}
	for _, c := range r.Clusters {
		if err := checkGRPCCluster(c); err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", c.GetName(), err))
		}
	}
	for _, e := range r.Endpoints {
		if err := checkGRPCEndpoints(e); err != nil {
			errs = append(errs, fmt.Errorf("load assignment %s: %w", e.GetClusterName(), err))
		}
	}
	return errors.Join(errs...)
}

func checkGRPCRetry(p *routev3.RetryPolicy) error {
	if p == nil {
		return nil
	}
	if n := p.GetNumRetries(); n != nil && n.GetValue() < 1 {
		return errors.New("retry_policy.num_retries must be at least 1 for gRPC")
	}
	if b := p.GetRetryBackOff(); b != nil {
		if b.GetBaseInterval().AsDuration() <= 0 {
			return errors.New("retry_policy.retry_back_off.base_interval must be greater than 0 for gRPC")
		}
		if m := b.GetMaxInterval(); m != nil && m.AsDuration() <= 0 {
			return errors.New("retry_policy.retry_back_off.max_interval must be greater than 0 for gRPC")
		}
	}
	return nil
}

func checkGRPCCluster(c *clusterv3.Cluster) error {
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_RING_HASH, clusterv3.Cluster_LEAST_REQUEST:
	default:
		return fmt.Errorf("lb_policy %s is rejected by gRPC", c.GetLbPolicy())
	}
	switch {
	case c.GetType() == clusterv3.Cluster_EDS && c.GetClusterType() == nil:
		if c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
			return errors.New("gRPC needs EDS over ADS")
		}
	case c.GetType() == clusterv3.Cluster_LOGICAL_DNS:
		la := c.GetLoadAssignment()
		if len(la.GetEndpoints()) != 1 || len(la.GetEndpoints()[0].GetLbEndpoints()) != 1 {
			return errors.New("a LOGICAL_DNS cluster needs exactly one locality with one endpoint for gRPC")
		}
	case c.GetClusterType().GetName() == AggregateClusterType:
	default:
		return fmt.Errorf("cluster type %s is not supported by gRPC", c.GetType())
	}
	if od := c.GetOutlierDetection(); od != nil {
		for _, f := range []struct {
			name string
			v    uint32
		}{
			{"max_ejection_percent", od.GetMaxEjectionPercent().GetValue()},
			{"enforcing_success_rate", od.GetEnforcingSuccessRate().GetValue()},
			{"failure_percentage_threshold", od.GetFailurePercentageThreshold().GetValue()},
			{"enforcing_failure_percentage", od.GetEnforcingFailurePercentage().GetValue()},
		} {
			if f.v > 100 {
				return fmt.Errorf("outlier_detection.%s must be at most 100, got %d", f.name, f.v)
			}
		}
	}
	return nil
}

func checkGRPCEndpoints(e *endpointv3.ClusterLoadAssignment) error {
	seen := map[string]bool{}
	for i, l := range e.GetEndpoints() {
		if l.GetLocality() == nil {
			return fmt.Errorf("endpoints[%d]: a locality without an ID is rejected by gRPC", i)
		}
		if l.GetLoadBalancingWeight().GetValue() == 0 {
			return fmt.Errorf("endpoints[%d]: a locality without a weight is ignored by gRPC", i)
		}
		if l.GetPriority() != 0 {
			return fmt.Errorf("endpoints[%d]: priority %d without lower priorities is rejected by gRPC", i, l.GetPriority())
		}
		for j, ep := range l.GetLbEndpoints() {
			if w := ep.GetLoadBalancingWeight(); w != nil && w.GetValue() == 0 {
				return fmt.Errorf("endpoints[%d].lb_endpoints[%d]: weight 0 is rejected by gRPC", i, j)
			}
			sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
			addr := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
			if seen[addr] {
				return fmt.Errorf("endpoints[%d].lb_endpoints[%d]: duplicate address %s is rejected by gRPC", i, j, addr)
			}
			seen[addr] = true
		}
	}
	return nil
}

// checkEnvoy applies the rule Envoy enforces beyond ValidateAll on what
// Bulwark generates: an aggregate cluster needs lb_policy CLUSTER_PROVIDED.
func checkEnvoy(r *Resources) error {
	var errs []error
	for _, c := range r.Clusters {
		if c.GetClusterType().GetName() == AggregateClusterType && c.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
			errs = append(errs, fmt.Errorf("cluster %s: an aggregate cluster needs lb_policy CLUSTER_PROVIDED for Envoy", c.GetName()))
		}
	}
	return errors.Join(errs...)
}
