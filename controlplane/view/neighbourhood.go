package view

import (
	"github.com/bulwarkmesh/bulwark/policies"
)

// Neighbourhood returns, as a new set, what validation, conflict checks and
// lint of a write need to judge rs (the resources a write changes, in their
// stored and in their new versions) exactly as the whole set would:
//
//   - the services rs apply to: a service itself, a policy's target service
//     (every service matching a selector, every service for "*"), an
//     experiment's target;
//   - for each of those, every policy that may apply to it (those naming it
//     and the broad ones) and the experiments that target it;
//   - the services their fallbacks name, transitively, with the same (a
//     fallback cycle runs through them);
//   - the services that touched services depend on (they must exist);
//   - the stored versions of rs.
//
// Lint findings about rs computed on it equal those of the whole set
// (TestNeighbourhoodLintMatchesWholeSet); findings about other resources
// may not. The resources are shared with the index: change none of them.
func (x *Index) Neighbourhood(rs ...policies.Resource) *policies.Set {
	out := policies.NewSet()
	var queue []string
	queued := map[string]bool{}
	enqueue := func(svc string) {
		if svc != "" && svc != "*" && !queued[svc] {
			queued[svc] = true
			queue = append(queue, svc)
		}
	}
	all := func() {
		for name := range x.services {
			enqueue(name)
		}
	}
	var both []policies.Resource
	for _, r := range rs {
		both = append(both, r)
		if cur := x.Get(r.GetKind(), r.GetMeta().Name); cur != nil {
			out.Add(cur)
			both = append(both, cur)
		}
	}
	for _, r := range both {
		switch v := r.(type) {
		case *policies.Service:
			enqueue(v.Metadata.Name)
			for _, d := range v.Spec.Dependencies {
				if s, ok := x.services[d]; ok {
					out.Add(s)
				}
			}
		case *policies.ResiliencePolicy:
			t := v.Spec.Target
			switch {
			case t.Service == "*":
				all()
			case t.Service != "":
				enqueue(t.Service)
			case len(t.Selector) > 0:
				for name, s := range x.services {
					if selects(t.Selector, s.Metadata.Labels) {
						enqueue(name)
					}
				}
			}
			if f := v.Spec.Fallback; f != nil {
				enqueue(f.Service)
			}
		case *policies.ChaosExperiment:
			enqueue(v.Spec.Target.Service)
		}
	}
	broadAdded := false
	for len(queue) > 0 {
		svc := queue[0]
		queue = queue[1:]
		if s, ok := x.services[svc]; ok {
			out.Add(s)
		}
		for _, p := range x.byTarget[svc] {
			out.Add(p)
			if f := p.Spec.Fallback; f != nil {
				enqueue(f.Service)
			}
		}
		if !broadAdded {
			broadAdded = true
			for _, p := range x.broad {
				out.Add(p)
				if f := p.Spec.Fallback; f != nil {
					enqueue(f.Service)
				}
			}
		}
		for _, e := range x.expByTarget[svc] {
			out.Add(e)
		}
	}
	return out
}

// selects reports whether labels carry every pair of a selector.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
