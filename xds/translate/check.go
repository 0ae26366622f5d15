package translate

import (
	"errors"
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	aggregatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/aggregate/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// Check verifies a group's resources before they are published, as the
// proxies would: every resource passes ValidateAll, then CheckReferences.
func Check(r *Resources) error {
	if r == nil {
		return errors.New("nil resources")
	}
	var errs []error
	for _, l := range r.Listeners {
		errs = append(errs, wrap("listener", l.GetName(), l.ValidateAll()))
	}
	for _, rc := range r.Routes {
		errs = append(errs, wrap("route configuration", rc.GetName(), rc.ValidateAll()))
	}
	for _, c := range r.Clusters {
		errs = append(errs, wrap("cluster", c.GetName(), c.ValidateAll()))
	}
	for _, e := range r.Endpoints {
		errs = append(errs, wrap("load assignment", e.GetClusterName(), e.ValidateAll()))
	}
	errs = append(errs, CheckReferences(r))
	return errors.Join(errs...)
}

// CheckReferences is Check without ValidateAll, for resources assembled
// from ServiceResources, whose every piece passed ValidateAll when it was
// translated (the group-level listener and route configuration are checked
// here). Every resource has a unique name; a snapshot of them passes
// Consistent() (every EDS cluster has its load assignment and every load
// assignment its cluster, every RDS name of a socket listener has its route
// configuration); no domain is served by two virtual hosts of a route
// configuration (Envoy rejects it); every API listener's RDS name has its route configuration
// and every route configuration is referenced (Consistent cannot see API
// listeners, so gRPC route configurations are checked here); every cluster
// a route or an aggregate cluster names exists. A group with API listeners
// (proxyless gRPC) must also obey the rules gRPC's xDS client enforces (it
// would NACK otherwise); one without must obey Envoy's rule for aggregate
// clusters.
func CheckReferences(r *Resources) error {
	if r == nil {
		return errors.New("nil resources")
	}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	names := map[string]map[string]bool{}
	unique := func(kind, name string) {
		if names[kind] == nil {
			names[kind] = map[string]bool{}
		}
		switch {
		case name == "":
			add(fmt.Errorf("%s without a name", kind))
		case names[kind][name]:
			add(fmt.Errorf("%s %s: duplicate name", kind, name))
		}
		names[kind][name] = true
	}
	for _, l := range r.Listeners {
		unique("listener", l.GetName())
		if l.GetApiListener() == nil {
			add(wrap("listener", l.GetName(), l.ValidateAll())) // the group's own listener
		}
	}
	for _, rc := range r.Routes {
		unique("route configuration", rc.GetName())
		add(checkDomains(rc))
	}
	for _, c := range r.Clusters {
		unique("cluster", c.GetName())
	}
	for _, e := range r.Endpoints {
		unique("load assignment", e.GetClusterName())
	}

	// API listeners: their route configurations are checked here and left
	// out of the snapshot given to Consistent, which cannot see them.
	apiRoutes := map[string]bool{}
	hcms := map[*anypb.Any]string{} // both listeners of a service share one
	for _, l := range r.Listeners {
		cfg := l.GetApiListener().GetApiListener()
		if cfg == nil {
			continue
		}
		name, seen := hcms[cfg]
		if !seen {
			hcm := &hcmv3.HttpConnectionManager{}
			if err := cfg.UnmarshalTo(hcm); err != nil {
				add(fmt.Errorf("listener %s: api_listener is not an HTTP connection manager: %w", l.GetName(), err))
				continue
			}
			name = hcm.GetRds().GetRouteConfigName()
			hcms[cfg] = name
		}
		if name == "" || !names["route configuration"][name] {
			add(fmt.Errorf("listener %s: route configuration %q does not exist", l.GetName(), name))
		}
		apiRoutes[name] = true
	}
	snap := r.ByType()
	socketRoutes := snap[resourcev3.RouteType][:0:0]
	for _, rc := range r.Routes {
		if !apiRoutes[rc.GetName()] {
			socketRoutes = append(socketRoutes, rc)
		}
	}
	snap[resourcev3.RouteType] = socketRoutes
	s, err := cachev3.NewSnapshot("check", snap)
	if err != nil {
		add(err)
	} else {
		add(s.Consistent())
	}

	for _, rc := range r.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			for i, rt := range vh.GetRoutes() {
				if c := rt.GetRoute().GetCluster(); c != "" && !names["cluster"][c] {
					add(fmt.Errorf("route configuration %s: virtual host %s: routes[%d]: cluster %q does not exist", rc.GetName(), vh.GetName(), i, c))
				}
			}
		}
	}
	for _, c := range r.Clusters {
		add(checkAggregate(c, names["cluster"]))
	}
	// A group with API listeners is a gRPC group; one without is Envoy's.
	if len(hcms) > 0 {
		add(checkGRPC(r))
	} else {
		add(checkEnvoy(r))
	}
	return errors.Join(errs...)
}

// checkDomains verifies that no two virtual hosts of a route configuration
// serve the same domain.
func checkDomains(rc *routev3.RouteConfiguration) error {
	vhs := rc.GetVirtualHosts()
	if len(vhs) < 2 {
		return nil
	}
	owner := make(map[string]string, 2*len(vhs))
	for _, vh := range vhs {
		for _, d := range vh.GetDomains() {
			if other, dup := owner[d]; dup {
				return fmt.Errorf("route configuration %s: domain %q is served by virtual hosts %s and %s", rc.GetName(), d, other, vh.GetName())
			}
			owner[d] = vh.GetName()
		}
	}
	return nil
}

// checkAggregate verifies that every cluster an aggregate cluster names exists.
func checkAggregate(c *clusterv3.Cluster, clusters map[string]bool) error {
	ct := c.GetClusterType()
	if ct == nil || ct.GetName() != AggregateClusterType {
		return nil
	}
	cfg := &aggregatev3.ClusterConfig{}
	if err := ct.GetTypedConfig().UnmarshalTo(cfg); err != nil {
		return fmt.Errorf("cluster %s: bad aggregate configuration: %w", c.GetName(), err)
	}
	if len(cfg.GetClusters()) == 0 {
		return fmt.Errorf("cluster %s: aggregate cluster names no cluster", c.GetName())
	}
	for _, name := range cfg.GetClusters() {
		if !clusters[name] {
			return fmt.Errorf("cluster %s: aggregated cluster %q does not exist", c.GetName(), name)
		}
	}
	return nil
}

func wrap(kind, name string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s %s: %w", kind, name, err)
}
