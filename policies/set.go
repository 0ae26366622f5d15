package policies

import (
	"slices"
	"sort"
	"sync"
)

// Set is a whole configuration: every service, policy and experiment, keyed by
// name. It is what resolve, lint and translate work on.
type Set struct {
	Services    map[string]*Service
	Policies    map[string]*ResiliencePolicy
	Experiments map[string]*ChaosExperiment
	// Registered holds self-registered instances: service → instance → endpoint.
	// They join the service's static endpoints.
	Registered map[string]map[string]Endpoint

	// idxMu guards the index, so one Set can be resolved from several goroutines.
	idxMu sync.Mutex
	// index, built lazily by the resolver: policies by target service name.
	byService map[string][]*ResiliencePolicy
	// broad holds "*" and selector policies, which may match any service.
	broad []*ResiliencePolicy
}

// NewSet builds a Set from resources; a later resource of the same kind and
// name replaces an earlier one.
func NewSet(rs ...Resource) *Set {
	s := &Set{
		Services:    map[string]*Service{},
		Policies:    map[string]*ResiliencePolicy{},
		Experiments: map[string]*ChaosExperiment{},
		Registered:  map[string]map[string]Endpoint{},
	}
	for _, r := range rs {
		s.Add(r)
	}
	return s
}

// Add puts a resource in the set, replacing one of the same kind and name.
func (s *Set) Add(r Resource) {
	switch v := r.(type) {
	case *Service:
		s.Services[v.Metadata.Name] = v
	case *ResiliencePolicy:
		s.Policies[v.Metadata.Name] = v
	case *ChaosExperiment:
		s.Experiments[v.Metadata.Name] = v
	}
	s.resetIndex()
}

func (s *Set) resetIndex() {
	s.idxMu.Lock()
	s.byService, s.broad = nil, nil
	s.idxMu.Unlock()
}

// Register adds or replaces a self-registered instance of a service.
func (s *Set) Register(service, instance string, ep Endpoint) {
	m := make(map[string]Endpoint, len(s.Registered[service])+1)
	for k, v := range s.Registered[service] {
		m[k] = v
	}
	ep.Instance = instance
	m[instance] = ep
	s.Registered[service] = m
}

// Deregister removes a self-registered instance.
func (s *Set) Deregister(service, instance string) {
	if _, ok := s.Registered[service][instance]; !ok {
		return
	}
	m := make(map[string]Endpoint, len(s.Registered[service]))
	for k, v := range s.Registered[service] {
		if k != instance {
			m[k] = v
		}
	}
	if len(m) == 0 {
		delete(s.Registered, service)
		return
	}
	s.Registered[service] = m
}

// EndpointsOf returns a service's static endpoints followed by its
// self-registered ones, sorted by instance name.
func (s *Set) EndpointsOf(service string) []Endpoint {
	svc := s.Services[service]
	var out []Endpoint
	if svc != nil {
		out = append(out, svc.Spec.Endpoints...)
	}
	reg := s.Registered[service]
	for _, inst := range sortedKeys(reg) {
		out = append(out, reg[inst])
	}
	return out
}

// Remove deletes a resource by kind and name.
func (s *Set) Remove(kind, name string) {
	switch kind {
	case KindService:
		delete(s.Services, name)
	case KindPolicy:
		delete(s.Policies, name)
	case KindExperiment:
		delete(s.Experiments, name)
	}
	s.resetIndex()
}

// Get returns a resource by kind and name, or nil.
func (s *Set) Get(kind, name string) Resource {
	switch kind {
	case KindService:
		if v, ok := s.Services[name]; ok {
			return v
		}
	case KindPolicy:
		if v, ok := s.Policies[name]; ok {
			return v
		}
	case KindExperiment:
		if v, ok := s.Experiments[name]; ok {
			return v
		}
	}
	return nil
}

// Clone returns a shallow copy: the maps are new, the resources shared.
func (s *Set) Clone() *Set {
	c := NewSet()
	for k, v := range s.Services {
		c.Services[k] = v
	}
	for k, v := range s.Policies {
		c.Policies[k] = v
	}
	for k, v := range s.Experiments {
		c.Experiments[k] = v
	}
	for k, v := range s.Registered {
		c.Registered[k] = v // instance maps are replaced, never mutated, by their owner
	}
	return c
}

// Resources returns every resource, ordered by kind then name.
func (s *Set) Resources() []Resource {
	out := make([]Resource, 0, len(s.Services)+len(s.Policies)+len(s.Experiments))
	for _, n := range sortedKeys(s.Services) {
		out = append(out, s.Services[n])
	}
	for _, n := range sortedKeys(s.Policies) {
		out = append(out, s.Policies[n])
	}
	for _, n := range sortedKeys(s.Experiments) {
		out = append(out, s.Experiments[n])
	}
	return out
}

// ServiceNames returns the names of every service, sorted.
func (s *Set) ServiceNames() []string { return sortedKeys(s.Services) }

// Sources returns every source service named by a policy or experiment,
// sorted, with "" (a caller no source-scoped policy names) first.
func (s *Set) Sources() []string {
	seen := map[string]bool{"": true}
	for _, p := range s.Policies {
		for _, src := range p.Spec.Sources {
			seen[src] = true
		}
	}
	for _, e := range s.Experiments {
		for _, src := range e.Spec.Sources {
			seen[src] = true
		}
	}
	return sortedKeys(seen)
}

// CalledBy returns the services that proxies of source may call, sorted: its
// dependencies and, transitively, their fallbacks; every service when source
// is unknown or declares no dependencies.
func (s *Set) CalledBy(source string) []string {
	svc, ok := s.Services[source]
	if !ok || svc.Spec.Dependencies == nil {
		return s.ServiceNames()
	}
	seen := map[string]bool{}
	queue := slices.Clone(svc.Spec.Dependencies)
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		if _, ok := s.Services[name]; !ok {
			continue
		}
		seen[name] = true
		// The fallback of a policy that applies to the caller's calls to the
		// dependency (on any route) must reach the caller too.
		labels := s.Services[name].Metadata.Labels
		for _, p := range s.policiesFor(name) {
			if p.Spec.Fallback == nil || p.Spec.Fallback.Service == "" {
				continue
			}
			route := ""
			if r := p.Spec.Target.Route; r != nil {
				route = r.PathPrefix
			}
			if p.Matches(source, name, labels, route) {
				queue = append(queue, p.Spec.Fallback.Service)
			}
		}
	}
	return sortedKeys(seen)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
