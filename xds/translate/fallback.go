package translate

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	aggregatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/aggregate/v3"

	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// AggregateClusterType is the custom cluster type of a fallback's aggregate cluster.
const AggregateClusterType = "envoy.clusters.aggregate"

// FallbackCluster names the aggregate cluster of a service with a fallback.
func FallbackCluster(service string) string { return service + ir.FallbackSuffix }

// routeTarget is the cluster a service's routes send to: its aggregate
// cluster when it has a fallback, else its own cluster.
func routeTarget(s *ir.Service) string {
	if s.Fallback != "" {
		return FallbackCluster(s.Name)
	}
	return s.Name
}

// aggregateCluster maps fallback: an aggregate cluster that prefers the
// service and fails over to the fallback service when no healthy host of
// the service is left. Envoy requires lb_policy CLUSTER_PROVIDED on an
// aggregate cluster; gRPC rejects any lb_policy but ROUND_ROBIN, RING_HASH
// and LEAST_REQUEST, so for gRPC it stays unset.
func aggregateCluster(flavor ir.Flavor, s *ir.Service) (*clusterv3.Cluster, error) {
	cfg, err := toAny(&aggregatev3.ClusterConfig{Clusters: []string{s.Name, s.Fallback}})
	if err != nil {
		return nil, err
	}
	c := &clusterv3.Cluster{
		Name: FallbackCluster(s.Name),
		ClusterDiscoveryType: &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{
			Name:        AggregateClusterType,
			TypedConfig: cfg,
		}},
	}
	if flavor == ir.FlavorEnvoy {
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
	}
	return c, nil
}
