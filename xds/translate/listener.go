package translate

import (
	"strconv"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// httpConnectionManager fetches route configuration routeName over ADS and
// runs the fault filter, then the router. The filter list never depends on
// the policies, so policy changes never touch a listener.
func httpConnectionManager(statPrefix, routeName string) (*hcmv3.HttpConnectionManager, error) {
	filters, err := httpFilters()
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    ads,
			RouteConfigName: routeName,
		}},
		HttpFilters: filters,
	}, nil
}

// httpFilters are the filters of every connection manager, built once.
var httpFilters = sync.OnceValues(func() ([]*hcmv3.HttpFilter, error) {
	fault, err := faultFilter()
	if err != nil {
		return nil, err
	}
	router, err := toAny(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	return []*hcmv3.HttpFilter{
		fault,
		{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}},
	}, nil
})

// outboundHCM is the outbound listener's connection manager; it never changes.
var outboundHCM = sync.OnceValues(func() (*anypb.Any, error) {
	hcm, err := httpConnectionManager(OutboundListener, OutboundRoute)
	if err != nil {
		return nil, err
	}
	return toAny(hcm)
})

// outboundListener is the Envoy sidecar's one socket listener: every call
// the application makes goes through it, routed by RDS "outbound".
func outboundListener(addr ir.Address) *listenerv3.Listener {
	cfg, err := outboundHCM()
	if err != nil {
		// Marshalling constant messages cannot fail: this is a programming
		// error, not bad input.
		panic(err)
	}
	return &listenerv3.Listener{
		Name:             OutboundListener,
		Address:          socketAddress(addr.Host, addr.Port),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       wellknown.HTTPConnectionManager,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: cfg},
			}},
		}},
	}
}

// apiListeners are a service's listeners for proxyless gRPC: a client
// dialing xds:///name asks for listener "name", one dialing
// xds:///name:port for "name:port". Both are API listeners whose
// connection manager fetches route configuration "name". They have no
// address and no filter chains: gRPC reads only the api_listener.
func apiListeners(s *ir.Service) ([]*listenerv3.Listener, error) {
	hcm, err := httpConnectionManager(s.Name, s.Name)
	if err != nil {
		return nil, err
	}
	cfg, err := toAny(hcm)
	if err != nil {
		return nil, err
	}
	names := []string{s.Name, s.Name + ":" + strconv.Itoa(s.Port)}
	out := make([]*listenerv3.Listener, 0, len(names))
	for _, n := range names {
		out = append(out, &listenerv3.Listener{
			Name:        n,
			ApiListener: &listenerv3.ApiListener{ApiListener: cfg},
		})
	}
	return out, nil
}
