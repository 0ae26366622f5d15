// Package resolve turns a set of Bulwark resources into the validated IR one
// proxy group receives: it picks the services the group calls, merges the
// policies that apply to each (service, route) by precedence, applies the
// defaults and attaches the chaos experiment in force.
package resolve

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// Default address of the Envoy outbound listener.
const (
	DefaultOutboundHost = "127.0.0.1"
	DefaultOutboundPort = 15001
)

// Options tune resolution.
type Options struct {
	// Outbound is the Envoy outbound listener's address. An empty host or a
	// zero port takes the default (127.0.0.1:15001). Unused for gRPC.
	Outbound ir.Address
}

// Resolve builds the IR of the proxy group (flavor, source): the services
// source may call (policies.Set.CalledBy), each with its merged, defaulted
// policy and the chaos experiment in force on each route.
//
// It never mutates set. It is deterministic: the same set gives the same IR.
// A service whose IR is invalid is left out and reported; the others are
// still resolved. A fallback naming a service that is not in the result, an
// experiment that cannot be applied and a duplicate endpoint are dropped and
// reported, keeping their service. A nil IR comes back only when the group
// itself is invalid (an unknown flavor, a bad outbound address).
func Resolve(set *policies.Set, flavor ir.Flavor, source string, opts Options) (*ir.Xds, []error) {
	if set == nil {
		return nil, []error{errors.New("resolve: nil set")}
	}
	x := &ir.Xds{Flavor: flavor, Source: source}
	if flavor == ir.FlavorEnvoy {
		x.Outbound = opts.Outbound
		if x.Outbound.Host == "" {
			x.Outbound.Host = DefaultOutboundHost
		}
		if x.Outbound.Port == 0 {
			x.Outbound.Port = DefaultOutboundPort
		}
	}
	if err := x.ValidateGroup(); err != nil {
		return nil, []error{err}
	}
	var errs []error
	// Experiments and route policies name their service: most services
	// have neither, and for those ExperimentsFor and Routes, which scan
	// every experiment, need not be asked at all.
	hints := map[string]hint{}
	for _, e := range set.Experiments {
		h := hints[e.Spec.Target.Service]
		h.chaos, h.routes = true, h.routes || e.Spec.Target.Route != nil
		hints[e.Spec.Target.Service] = h
	}
	for _, p := range set.Policies {
		if p.Spec.Target.Route != nil {
			h := hints[p.Spec.Target.Service]
			h.routes = true
			hints[p.Spec.Target.Service] = h
		}
	}
	names := set.CalledBy(source)
	x.Services = make([]*ir.Service, 0, len(names))
	kept := make(map[string]bool, len(names))
	for _, name := range names {
		s, serrs := resolveService(set, source, name, hints[name])
		errs = append(errs, serrs...)
		if err := s.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("service %s left out: %w", name, err))
			continue
		}
		x.Services = append(x.Services, s)
		kept[name] = true
	}
	for _, s := range x.Services {
		if s.Fallback != "" && !kept[s.Fallback] {
			why := "does not exist"
			if set.Services[s.Fallback] != nil {
				why = "was left out"
			}
			errs = append(errs, &ir.FieldError{Path: ir.ServicePath(s.Name) + ".fallback",
				Message: fmt.Sprintf("service %q %s; the fallback is dropped", s.Fallback, why)})
			s.Fallback = ""
		}
	}
	return x, errs
}

// hint says what may concern a service beyond its plain policies.
type hint struct {
	chaos  bool // an experiment targets it
	routes bool // a policy or an experiment targets one of its routes
}

// resolveService builds one service's IR. It reports what it drops.
func resolveService(set *policies.Set, source, name string, h hint) (*ir.Service, []error) {
	svc := *set.Services[name]
	svc.Spec.Endpoints = nil // endpoints come from EndpointsOf, static and registered
	policies.DefaultService(&svc)
	s := &ir.Service{Name: name, Protocol: svc.Spec.Protocol, Port: svc.Spec.Port, DNS: svc.Spec.DNS}
	var errs []error
	s.Endpoints, errs = endpoints(name, set.EndpointsOf(name))

	eff := set.Resolve(source, name, "")
	spec := eff.Spec
	policies.DefaultEffective(&spec)
	s.Cluster = ir.ClusterPolicy{
		ConnectTimeout: spec.Timeouts.Connect,
		CircuitBreaker: spec.CircuitBreaker,
		Bulkhead:       spec.Bulkhead,
		HealthCheck:    spec.HealthCheck,
	}
	if spec.Retries != nil {
		s.Cluster.RetryBudget = spec.Retries.Budget
	}
	if hc := spec.HealthCheck; hc != nil && hc.GRPC != nil && s.Protocol == policies.ProtocolHTTP {
		errs = append(errs, &ir.FieldError{Path: ir.ServicePath(name) + ".cluster.healthCheck.grpc",
			Message: "a gRPC health check needs protocol http2 or grpc (it speaks HTTP/2); the health check is dropped"})
		s.Cluster.HealthCheck = nil
	}
	if spec.Fallback != nil {
		s.Fallback = spec.Fallback.Service
	}

	var prefixes []string
	if h.routes {
		prefixes = slices.Clone(set.Routes(name))
	}
	slices.SortFunc(prefixes, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(b), len(a)), cmp.Compare(a, b))
	})
	defaultNamed := false
	for _, p := range prefixes {
		if p == ir.DefaultRoute {
			defaultNamed = true // a policy or experiment targets "/" itself
			continue
		}
		r := routeFrom(p, routeSpec(set, source, name, p))
		if h.chaos {
			r.Fault = faultFor(set, source, name, p)
		}
		s.Routes = append(s.Routes, r)
	}
	def, defRoute := routeFrom(ir.DefaultRoute, spec), ""
	if defaultNamed {
		def, defRoute = routeFrom(ir.DefaultRoute, routeSpec(set, source, name, ir.DefaultRoute)), ir.DefaultRoute
	}
	if h.chaos {
		def.Fault = faultFor(set, source, name, defRoute)
	}
	s.Routes = append(s.Routes, def)

	for i, r := range s.Routes {
		if r.Fault == nil {
			continue
		}
		if err := r.Fault.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s.routes[%d]: experiment %s not applied: %w", ir.ServicePath(name), i, r.Fault.Experiment, err))
			r.Fault = nil
		}
	}
	return s, errs
}

// routeSpec is the merged, defaulted policy of one named route.
func routeSpec(set *policies.Set, source, name, prefix string) policies.PolicySpec {
	spec := set.Resolve(source, name, prefix).Spec
	policies.DefaultEffective(&spec)
	return spec
}

// routeFrom keeps the route-level settings of a merged policy.
func routeFrom(prefix string, spec policies.PolicySpec) *ir.Route {
	r := &ir.Route{PathPrefix: prefix}
	if t := spec.Timeouts; t != nil {
		r.Timeout, r.IdleTimeout = routeTimeout(t.Request), routeTimeout(t.Idle)
	}
	if rt := spec.Retries; rt != nil {
		perTry := rt.PerTryTimeout
		if perTry != nil && perTry.IsOff() {
			perTry = nil // Envoy reads no per-try timeout as "bounded by the route timeout only"
		}
		r.Retry = &ir.Retry{
			Attempts:      *rt.Attempts,
			PerTryTimeout: perTry,
			On:            slices.Clone(rt.On),
			StatusCodes:   slices.Clone(rt.StatusCodes),
			Methods:       slices.Clone(rt.Methods),
			BackoffBase:   *rt.Backoff.Base,
			BackoffMax:    *rt.Backoff.Max,
		}
	}
	return r
}

// routeTimeout maps a route timeout of a policy into the IR: a timeout
// switched off becomes 0s, the IR's "no timeout" (unset would let Envoy's
// defaults apply: 15 s for a route, the stream idle timeout for idle).
func routeTimeout(d *policies.Duration) *policies.Duration {
	if d != nil && d.IsOff() {
		return policies.Dur(0)
	}
	return d
}

// faultFor returns the experiment in force on a route: the first (by name)
// targeting that route, else the first targeting the whole service. route ""
// is the default route when no experiment names "/".
func faultFor(set *policies.Set, source, name, route string) *ir.Fault {
	es := set.ExperimentsFor(source, name, route)
	if len(es) == 0 && route != "" {
		es = set.ExperimentsFor(source, name, "")
	}
	if len(es) == 0 {
		return nil
	}
	e := es[0]
	f := &ir.Fault{Experiment: e.Metadata.Name}
	if len(e.Spec.Headers) > 0 {
		f.Headers = make(map[string]string, len(e.Spec.Headers))
		for k, v := range e.Spec.Headers {
			f.Headers[k] = v
		}
	}
	if e.Spec.Abort != nil {
		a := *e.Spec.Abort
		f.Abort = &a
	}
	if e.Spec.Delay != nil {
		d := *e.Spec.Delay
		f.Delay = &d
	}
	return f
}

// endpoints converts a service's endpoints, sorted by zone, address and port,
// with weight 0 read as 1. A second endpoint with the same address and port
// is dropped and reported (gRPC rejects duplicates).
func endpoints(name string, eps []policies.Endpoint) ([]ir.Endpoint, []error) {
	if len(eps) == 0 {
		return nil, nil
	}
	var errs []error
	out := make([]ir.Endpoint, 0, len(eps))
	seen := make(map[string]bool, len(eps))
	for _, ep := range eps {
		key := net.JoinHostPort(ep.Address, strconv.Itoa(ep.Port))
		if seen[key] {
			what := "a static endpoint"
			if ep.Instance != "" {
				what = "registered instance " + ep.Instance
			}
			errs = append(errs, &ir.FieldError{Path: ir.ServicePath(name) + ".endpoints",
				Message: fmt.Sprintf("%s repeats %s; the duplicate is dropped", what, key)})
			continue
		}
		seen[key] = true
		w := ep.Weight
		if w == 0 {
			w = policies.DefaultEndpointWeight
		}
		out = append(out, ir.Endpoint{Address: ep.Address, Port: ep.Port, Zone: ep.Zone, Weight: w})
	}
	slices.SortFunc(out, func(a, b ir.Endpoint) int {
		return cmp.Or(cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
	})
	return out, errs
}
