package translate

import (
	"net"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// HTTPProtocolOptionsKey is the typed_extension_protocol_options key of the
// upstream HTTP protocol options.
const HTTPProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// buildCluster is the service's own cluster: EDS over ADS for static and
// registered endpoints; STRICT_DNS (Envoy) or LOGICAL_DNS (gRPC) for a DNS
// service. Envoy's EDS takes IP addresses only, so for Envoy a service
// with a hostname among its endpoints gets a STRICT_DNS cluster holding
// all of them, grouped by zone as EDS would (gRPC resolves a hostname
// endpoint when it connects, so it keeps EDS). The policy sections are
// applied by their own files.
func buildCluster(flavor ir.Flavor, s *ir.Service) (*clusterv3.Cluster, error) {
	c := &clusterv3.Cluster{Name: s.Name}
	switch {
	case s.DNS == "" && usesEDS(flavor, s):
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads}
	case s.DNS == "":
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		c.LoadAssignment = loadAssignment(s)
	default:
		typ := clusterv3.Cluster_STRICT_DNS
		if flavor == ir.FlavorGRPC {
			typ = clusterv3.Cluster_LOGICAL_DNS
		}
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: typ}
		c.LoadAssignment = dnsLoadAssignment(s)
	}
	applyConnectTimeout(c, &s.Cluster)
	c.OutlierDetection = outlierDetection(s.Cluster.CircuitBreaker)
	c.CircuitBreakers = circuitBreakers(flavor, &s.Cluster)
	if flavor == ir.FlavorEnvoy {
		c.HealthChecks = healthChecks(s)
		opts, err := protocolOptions(s)
		if err != nil {
			return nil, err
		}
		if opts != nil {
			c.TypedExtensionProtocolOptions = map[string]*anypb.Any{HTTPProtocolOptionsKey: opts}
		}
	}
	return c, nil
}

// usesEDS says whether the service's endpoints travel as a load assignment
// of their own (EDS) rather than inline in the cluster.
func usesEDS(flavor ir.Flavor, s *ir.Service) bool {
	return s.DNS == "" && (flavor == ir.FlavorGRPC || !s.HasHostnames())
}

// protocolOptions speaks HTTP/2 to http2 and grpc services and carries the
// bulkhead's max_requests_per_connection; nil when neither applies.
func protocolOptions(s *ir.Service) (*anypb.Any, error) {
	h2 := s.Protocol == policies.ProtocolHTTP2 || s.Protocol == policies.ProtocolGRPC
	var perConn *int
	if b := s.Cluster.Bulkhead; b != nil {
		perConn = b.MaxRequestsPerConnection
	}
	if !h2 && perConn == nil {
		return nil, nil
	}
	explicit := &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
		ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
	}
	if h2 {
		explicit.ProtocolConfig = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}
	}
	opts := &httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: explicit},
	}
	if perConn != nil {
		opts.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{MaxRequestsPerConnection: u32(*perConn)}
	}
	return toAny(opts)
}

// dnsLoadAssignment is the inline assignment of a DNS service: one locality
// with one endpoint, the host the proxy resolves (what gRPC requires of a
// LOGICAL_DNS cluster).
func dnsLoadAssignment(s *ir.Service) *endpointv3.ClusterLoadAssignment {
	host, port, _ := net.SplitHostPort(s.DNS) // checked by Validate
	p, _ := strconv.Atoi(port)
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: s.Name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			Locality:            &corev3.Locality{},
			LoadBalancingWeight: u32(1),
			LbEndpoints:         []*endpointv3.LbEndpoint{lbEndpoint(host, p, 1)},
		}},
	}
}
