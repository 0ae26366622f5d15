package translate

import (
	"cmp"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// loadAssignment groups a service's endpoints by zone. Every locality has a
// locality (possibly with an empty zone) and a weight, the sum of its
// endpoints' weights; every endpoint has a weight of at least 1: gRPC
// rejects localities without an ID and endpoints of weight 0, and ignores
// localities without a weight. Zones and endpoints are sorted.
func loadAssignment(s *ir.Service) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: s.Name}
	if len(s.Endpoints) == 0 {
		return cla
	}
	order := func(a, b ir.Endpoint) int {
		return cmp.Or(cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
	}
	eps := s.Endpoints // resolve sorts them already; the IR is never modified
	if !slices.IsSortedFunc(eps, order) {
		eps = slices.Clone(eps)
		slices.SortFunc(eps, order)
	}
	var cur *endpointv3.LocalityLbEndpoints
	var weight uint32
	flush := func() {
		if cur != nil {
			cur.LoadBalancingWeight = u32v(weight)
			cla.Endpoints = append(cla.Endpoints, cur)
		}
	}
	for i, ep := range eps {
		if i == 0 || ep.Zone != eps[i-1].Zone {
			flush()
			cur = &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Zone: ep.Zone}}
			weight = 0
		}
		w := max(ep.Weight, 1)
		cur.LbEndpoints = append(cur.LbEndpoints, lbEndpoint(ep.Address, ep.Port, w))
		weight += uint32(w)
	}
	flush()
	return cla
}

func lbEndpoint(host string, port, weight int) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: socketAddress(host, port),
		}},
		LoadBalancingWeight: u32(weight),
	}
}

func socketAddress(host string, port int) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}
