package translate

import (
	"strconv"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// virtualHost is a service's virtual host: domains "name" and "name:port",
// one route per IR route in order (longest prefix first, "/" last), each
// sending to the service's cluster (or its fallback aggregate) with the
// route's timeouts, retries and fault.
func virtualHost(flavor ir.Flavor, s *ir.Service) (*routev3.VirtualHost, error) {
	vh := &routev3.VirtualHost{
		Name:    s.Name,
		Domains: []string{s.Name, s.Name + ":" + strconv.Itoa(s.Port)},
		Routes:  make([]*routev3.Route, 0, len(s.Routes)),
	}
	target := routeTarget(s)
	for _, r := range s.Routes {
		action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: target}}
		applyRouteTimeouts(flavor, action, r)
		rp, err := retryPolicy(flavor, r.Retry)
		if err != nil {
			return nil, err
		}
		action.RetryPolicy = rp
		fault, err := faultConfig(r.Fault)
		if err != nil {
			return nil, err
		}
		if fault != nil && flavor == ir.FlavorGRPC && len(r.Fault.Headers) > 0 {
			// gRPC's fault filter ignores HTTPFault.headers: the header
			// condition becomes a route of its own, ahead of the plain one,
			// so that untagged calls are never hurt.
			vh.Routes = append(vh.Routes, &routev3.Route{
				Match:                prefixMatch(r.PathPrefix, routeHeaders(r.Fault)),
				Action:               &routev3.Route_Route{Route: action},
				TypedPerFilterConfig: fault,
			})
			fault = nil
		}
		vh.Routes = append(vh.Routes, &routev3.Route{
			Match:                prefixMatch(r.PathPrefix, nil),
			Action:               &routev3.Route_Route{Route: action},
			TypedPerFilterConfig: fault,
		})
	}
	return vh, nil
}

func prefixMatch(prefix string, headers []*routev3.HeaderMatcher) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}, Headers: headers}
}
