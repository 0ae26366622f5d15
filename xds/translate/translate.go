// Package translate turns Bulwark's IR into the xDS resources of one proxy
// group: Envoy sidecars get an outbound listener, one route configuration and
// a cluster and load assignment per service; proxyless gRPC clients get an
// API listener and a route configuration per service instead. One file per
// feature (retry.go, outlier.go, fault.go, …) maps one policy section.
//
// Translation is pure and deterministic: identical IR gives identical
// resources, so a content hash can version them. Every resource passes its
// proto's ValidateAll before it leaves this package.
package translate

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// Resource names shared by every Envoy group.
const (
	// OutboundListener is the Envoy sidecar's one outbound listener.
	OutboundListener = "outbound"
	// OutboundRoute is the route configuration of the outbound listener.
	OutboundRoute = "outbound"
)

// Resources are the xDS resources of one proxy group, each list sorted by
// resource name.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}

// ServiceResources are the resources one service contributes to a group.
// They depend only on (flavor, service), so a caller may translate each
// distinct service once and share the result, objects included, across
// groups and builds (see Cache). They must not be modified.
type ServiceResources struct {
	// Name is the service's name.
	Name string
	// Flavor is the flavor the pieces were built for.
	Flavor ir.Flavor
	// VirtualHost is the service's entry in the Envoy "outbound" route
	// configuration; nil for gRPC.
	VirtualHost *routev3.VirtualHost
	// Route is the service's own route configuration (gRPC only).
	Route *routev3.RouteConfiguration
	// Listeners are the service's API listeners, "name" and "name:port" (gRPC only).
	Listeners []*listenerv3.Listener
	// Clusters are the service's cluster and, with a fallback, its aggregate cluster.
	Clusters []*clusterv3.Cluster
	// Endpoints is the service's load assignment; nil when the cluster
	// carries its endpoints inline (DNS services; for Envoy, services with
	// hostname endpoints).
	Endpoints *endpointv3.ClusterLoadAssignment
}

// ServiceFunc translates one service. TranslateService is the plain one;
// Cache.TranslateService memoizes it.
type ServiceFunc func(flavor ir.Flavor, s *ir.Service) (*ServiceResources, error)

// Translate turns a group's IR into its resources. See TranslateUsing.
func Translate(x *ir.Xds) (*Resources, error) {
	return TranslateUsing(x, TranslateService)
}

// TranslateUsing translates a group's IR, each service through f. A service
// that fails validation or translation is left out and its error joined
// into the returned error; the others are still translated, and a service
// whose fallback was left out (or is not in the group) is translated without
// its fallback. The result is nil only when the group itself is invalid.
func TranslateUsing(x *ir.Xds, f ServiceFunc) (*Resources, error) {
	if err := x.ValidateGroup(); err != nil {
		return nil, err
	}
	var errs []error
	parts := make([]*ServiceResources, len(x.Services))
	ok := make(map[string]bool, len(x.Services))
	for i, s := range x.Services {
		if s == nil {
			errs = append(errs, fmt.Errorf("services[%d]: must not be null", i))
			continue
		}
		if ok[s.Name] {
			errs = append(errs, fmt.Errorf("%s: duplicate service name; the second one is left out", ir.ServicePath(s.Name)))
			continue
		}
		p, err := f(x.Flavor, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s left out: %w", s.Name, err))
			continue
		}
		parts[i] = p
		ok[s.Name] = true
	}
	for i, s := range x.Services {
		if parts[i] == nil || s.Fallback == "" || ok[s.Fallback] {
			continue
		}
		errs = append(errs, fmt.Errorf("%s.fallback: service %q is not in the group; translated without fallback", ir.ServicePath(s.Name), s.Fallback))
		plain := *s
		plain.Fallback = ""
		p, err := f(x.Flavor, &plain)
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s left out: %w", s.Name, err))
			delete(ok, s.Name)
		}
		parts[i] = p
	}
	return Assemble(x, parts), errors.Join(errs...)
}

// TranslateService translates one service for a flavor. The service must be
// valid (it is checked first) and every resource built passes ValidateAll.
func TranslateService(flavor ir.Flavor, s *ir.Service) (*ServiceResources, error) {
	if flavor != ir.FlavorEnvoy && flavor != ir.FlavorGRPC {
		return nil, fmt.Errorf("flavor: must be %q or %q, got %q", ir.FlavorEnvoy, ir.FlavorGRPC, flavor)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	out := &ServiceResources{Name: s.Name, Flavor: flavor}
	c, err := buildCluster(flavor, s)
	if err != nil {
		return nil, err
	}
	out.Clusters = append(out.Clusters, c)
	if s.Fallback != "" {
		agg, err := aggregateCluster(flavor, s)
		if err != nil {
			return nil, err
		}
		out.Clusters = append(out.Clusters, agg)
	}
	if usesEDS(flavor, s) {
		out.Endpoints = loadAssignment(s)
	}
	vh, err := virtualHost(flavor, s)
	if err != nil {
		return nil, err
	}
	if flavor == ir.FlavorEnvoy {
		out.VirtualHost = vh
	} else {
		out.Route = &routev3.RouteConfiguration{Name: s.Name, VirtualHosts: []*routev3.VirtualHost{vh}}
		if out.Listeners, err = apiListeners(s); err != nil {
			return nil, err
		}
	}
	if err := out.validate(); err != nil {
		return nil, err
	}
	return out, nil
}

// validate runs ValidateAll on every resource of a service.
func (p *ServiceResources) validate() error {
	var errs []error
	add := func(kind, name string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", kind, name, err))
		}
	}
	for _, c := range p.Clusters {
		add("cluster", c.GetName(), c.ValidateAll())
	}
	if p.Endpoints != nil {
		add("load assignment", p.Endpoints.GetClusterName(), p.Endpoints.ValidateAll())
	}
	if p.VirtualHost != nil {
		add("virtual host", p.VirtualHost.GetName(), p.VirtualHost.ValidateAll())
	}
	if p.Route != nil {
		add("route configuration", p.Route.GetName(), p.Route.ValidateAll())
	}
	for _, l := range p.Listeners {
		add("listener", l.GetName(), l.ValidateAll())
	}
	return errors.Join(errs...)
}

// Assemble puts the pieces of a group's services together: for Envoy the
// outbound listener and the "outbound" route configuration holding every
// virtual host, for gRPC each service's own listeners and route
// configuration. Nil parts are skipped; every list is sorted by name.
// Assemble creates only the group-level resources; the per-service objects
// are shared, not copied.
func Assemble(x *ir.Xds, parts []*ServiceResources) *Resources {
	live := make([]*ServiceResources, 0, len(parts))
	for _, p := range parts {
		if p != nil {
			live = append(live, p)
		}
	}
	slices.SortFunc(live, func(a, b *ServiceResources) int { return strings.Compare(a.Name, b.Name) })
	r := &Resources{
		Clusters:  make([]*clusterv3.Cluster, 0, len(live)+len(live)/8),
		Endpoints: make([]*endpointv3.ClusterLoadAssignment, 0, len(live)),
	}
	if x.Flavor == ir.FlavorEnvoy {
		vhs := make([]*routev3.VirtualHost, 0, len(live))
		for _, p := range live {
			if p.VirtualHost != nil {
				vhs = append(vhs, p.VirtualHost)
			}
		}
		r.Listeners = []*listenerv3.Listener{outboundListener(x.Outbound)}
		r.Routes = []*routev3.RouteConfiguration{{Name: OutboundRoute, VirtualHosts: vhs}}
	} else {
		r.Listeners = make([]*listenerv3.Listener, 0, 2*len(live))
		r.Routes = make([]*routev3.RouteConfiguration, 0, len(live))
	}
	for _, p := range live {
		r.Clusters = append(r.Clusters, p.Clusters...)
		if p.Endpoints != nil {
			r.Endpoints = append(r.Endpoints, p.Endpoints)
		}
		if x.Flavor == ir.FlavorGRPC {
			r.Listeners = append(r.Listeners, p.Listeners...)
			if p.Route != nil {
				r.Routes = append(r.Routes, p.Route)
			}
		}
	}
	r.sort()
	return r
}
