package view

import (
	"sort"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// Index is the resources at one revision with the indexes a write check
// needs: policies by target service (and the broad ones: "*" and
// selectors), by fallback service, experiments by target, services by
// dependency, and resources by metadata.source.
type Index struct {
	rev         int64
	services    map[string]*policies.Service
	policies    map[string]*policies.ResiliencePolicy
	experiments map[string]*policies.ChaosExperiment

	byTarget    map[string]map[string]*policies.ResiliencePolicy
	broad       map[string]*policies.ResiliencePolicy
	byFallback  map[string]map[string]*policies.ResiliencePolicy
	expByTarget map[string]map[string]*policies.ChaosExperiment
	dependents  map[string]map[string]*policies.Service
	bySource    map[string]map[Ref]policies.Resource
}

// NewIndex returns an empty index.
func NewIndex() *Index {
	return &Index{
		services:    map[string]*policies.Service{},
		policies:    map[string]*policies.ResiliencePolicy{},
		experiments: map[string]*policies.ChaosExperiment{},
		byTarget:    map[string]map[string]*policies.ResiliencePolicy{},
		broad:       map[string]*policies.ResiliencePolicy{},
		byFallback:  map[string]map[string]*policies.ResiliencePolicy{},
		expByTarget: map[string]map[string]*policies.ChaosExperiment{},
		dependents:  map[string]map[string]*policies.Service{},
		bySource:    map[string]map[Ref]policies.Resource{},
	}
}

// FromSet indexes the resources of a set (its endpoints are left out) at
// revision rev.
func FromSet(set *policies.Set, rev int64) *Index {
	x := NewIndex()
	x.rev = rev
	for _, r := range set.Resources() {
		x.add(r)
	}
	return x
}

// Revision is the store revision the index reflects.
func (x *Index) Revision() int64 { return x.rev }

// Get returns a resource by kind and name, or nil.
func (x *Index) Get(kind, name string) policies.Resource {
	switch kind {
	case policies.KindService:
		if v, ok := x.services[name]; ok {
			return v
		}
	case policies.KindPolicy:
		if v, ok := x.policies[name]; ok {
			return v
		}
	case policies.KindExperiment:
		if v, ok := x.experiments[name]; ok {
			return v
		}
	}
	return nil
}

// OwnedBy returns the resources whose metadata.source is source, ordered by
// kind then name.
func (x *Index) OwnedBy(source string) []policies.Resource {
	out := make([]policies.Resource, 0, len(x.bySource[source]))
	for _, r := range x.bySource[source] {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].GetKind() != out[j].GetKind() {
			return out[i].GetKind() < out[j].GetKind()
		}
		return out[i].GetMeta().Name < out[j].GetMeta().Name
	})
	return out
}

// Referrers returns the resources that name a service: policies and
// experiments that target it, policies that fall back to it, services that
// depend on it.
func (x *Index) Referrers(service string) []policies.Resource {
	var out []policies.Resource
	for _, p := range x.byTarget[service] {
		out = append(out, p)
	}
	for _, p := range x.byFallback[service] {
		out = append(out, p)
	}
	for _, e := range x.expByTarget[service] {
		out = append(out, e)
	}
	for _, s := range x.dependents[service] {
		out = append(out, s)
	}
	return out
}

func (x *Index) apply(c store.Change) {
	if c.Kind == store.KindEndpoint {
		return
	}
	if old := x.Get(c.Kind, c.Name); old != nil {
		x.remove(old)
	}
	if c.Resource != nil {
		x.add(c.Resource)
	}
}

func (x *Index) add(r policies.Resource) {
	meta := r.GetMeta()
	switch v := r.(type) {
	case *policies.Service:
		x.services[meta.Name] = v
		for _, d := range v.Spec.Dependencies {
			put(x.dependents, d, meta.Name, v)
		}
	case *policies.ResiliencePolicy:
		x.policies[meta.Name] = v
		if t := v.Spec.Target.Service; t != "" && t != "*" {
			put(x.byTarget, t, meta.Name, v)
		} else {
			x.broad[meta.Name] = v
		}
		if f := v.Spec.Fallback; f != nil && f.Service != "" {
			put(x.byFallback, f.Service, meta.Name, v)
		}
	case *policies.ChaosExperiment:
		x.experiments[meta.Name] = v
		put(x.expByTarget, v.Spec.Target.Service, meta.Name, v)
	default:
		return
	}
	put(x.bySource, meta.Source, RefOf(r), r)
}

func (x *Index) remove(r policies.Resource) {
	meta := r.GetMeta()
	switch v := r.(type) {
	case *policies.Service:
		delete(x.services, meta.Name)
		for _, d := range v.Spec.Dependencies {
			drop(x.dependents, d, meta.Name)
		}
	case *policies.ResiliencePolicy:
		delete(x.policies, meta.Name)
		if t := v.Spec.Target.Service; t != "" && t != "*" {
			drop(x.byTarget, t, meta.Name)
		} else {
			delete(x.broad, meta.Name)
		}
		if f := v.Spec.Fallback; f != nil && f.Service != "" {
			drop(x.byFallback, f.Service, meta.Name)
		}
	case *policies.ChaosExperiment:
		delete(x.experiments, meta.Name)
		drop(x.expByTarget, v.Spec.Target.Service, meta.Name)
	default:
		return
	}
	drop(x.bySource, meta.Source, RefOf(r))
}

func put[K comparable, V any](m map[string]map[K]V, outer string, k K, v V) {
	in := m[outer]
	if in == nil {
		in = map[K]V{}
		m[outer] = in
	}
	in[k] = v
}

func drop[K comparable, V any](m map[string]map[K]V, outer string, k K) {
	delete(m[outer], k)
	if len(m[outer]) == 0 {
		delete(m, outer)
	}
}
