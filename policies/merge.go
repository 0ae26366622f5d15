package policies

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Specificity ranks how precisely a policy targets a call, low to high:
// "*" < selector < service < service+route; at the same target a policy that
// names sources beats one that does not.
type Specificity int

// Specificity of a policy: the target level times two, plus one with sources.
func (p *ResiliencePolicy) Specificity() Specificity {
	t := p.Spec.Target
	level := 0
	switch {
	case t.Service != "" && t.Service != "*" && t.Route != nil:
		level = 3
	case t.Service != "" && t.Service != "*":
		level = 2
	case len(t.Selector) > 0:
		level = 1
	}
	s := Specificity(level * 2)
	if len(p.Spec.Sources) > 0 {
		s++
	}
	return s
}

// Matches reports whether the policy applies to calls from source to service
// on route ("" is the service's default route). labels are the service's.
func (p *ResiliencePolicy) Matches(source, service string, labels map[string]string, route string) bool {
	return targetMatches(p.Spec.Target, service, labels, route) && sourceMatches(p.Spec.Sources, source)
}

func targetMatches(t Target, service string, labels map[string]string, route string) bool {
	if t.Route != nil && t.Route.PathPrefix != route {
		return false
	}
	switch {
	case t.Service == "*":
		return true
	case t.Service != "":
		return t.Service == service
	case len(t.Selector) > 0:
		for k, v := range t.Selector {
			if labels[k] != v {
				return false
			}
		}
		return true
	}
	return false
}

func sourceMatches(sources []string, source string) bool {
	return len(sources) == 0 || slices.Contains(sources, source)
}

// Effective is the merged policy for one (source, service, route).
type Effective struct {
	// Spec holds the merged settings; Target and Sources are empty.
	Spec PolicySpec
	// From maps each set leaf ("retries.attempts") to the policy that set it.
	From map[string]string
	// Conflicts lists leaves set by two policies of equal specificity.
	Conflicts []Conflict
}

// Conflict is a leaf set by several policies of equal specificity for the
// same (service, route, source). The lexically smallest policy name wins.
type Conflict struct {
	Service  string   `json:"service"`
	Route    string   `json:"route,omitempty"`
	Source   string   `json:"source,omitempty"`
	Field    string   `json:"field"`
	Policies []string `json:"policies"`
	Winner   string   `json:"winner"`
}

func (c Conflict) String() string {
	where := c.Service
	if c.Route != "" {
		where += " route " + c.Route
	}
	if c.Source != "" {
		where += " from " + c.Source
	}
	return fmt.Sprintf("%s: %s is set by %s with equal specificity; %s wins", where, c.Field, strings.Join(c.Policies, " and "), c.Winner)
}

// RouteLevelFields are the leaves a route-targeted policy may set.
var RouteLevelFields = []string{"timeouts.request", "timeouts.idle", "retries.attempts", "retries.perTryTimeout",
	"retries.on", "retries.statusCodes", "retries.methods", "retries.backoff.base", "retries.backoff.max"}

// policiesFor returns the policies that may apply to a service: those naming
// it and the broad ones ("*" and selectors).
func (s *Set) policiesFor(service string) []*ResiliencePolicy {
	s.idxMu.Lock()
	defer s.idxMu.Unlock()
	if s.byService == nil {
		idx := map[string][]*ResiliencePolicy{}
		var broad []*ResiliencePolicy
		for _, name := range sortedKeys(s.Policies) {
			p := s.Policies[name]
			if t := p.Spec.Target.Service; t != "" && t != "*" {
				idx[t] = append(idx[t], p)
			} else {
				broad = append(broad, p)
			}
		}
		s.byService, s.broad = idx, broad
	}
	out := make([]*ResiliencePolicy, 0, len(s.broad)+len(s.byService[service]))
	out = append(out, s.broad...)
	return append(out, s.byService[service]...)
}

// Routes returns the route prefixes that policies or experiments name for a
// service, sorted. The default route ("") is not included.
func (s *Set) Routes(service string) []string {
	seen := map[string]bool{}
	for _, p := range s.policiesFor(service) {
		if r := p.Spec.Target.Route; r != nil && p.Spec.Target.Service == service {
			seen[r.PathPrefix] = true
		}
	}
	for _, e := range s.Experiments {
		if r := e.Spec.Target.Route; r != nil && e.Spec.Target.Service == service {
			seen[r.PathPrefix] = true
		}
	}
	return sortedKeys(seen)
}

// Resolve merges the policies that apply to calls from source to service on
// route, field by field: the most specific policy that sets a leaf wins.
func (s *Set) Resolve(source, service, route string) Effective {
	var labels map[string]string
	if svc, ok := s.Services[service]; ok {
		labels = svc.Metadata.Labels
	}
	var applicable []*ResiliencePolicy
	for _, p := range s.policiesFor(service) {
		if p.Matches(source, service, labels, route) {
			applicable = append(applicable, p)
		}
	}
	// Most specific first; at equal specificity, lexically smaller name first.
	sort.SliceStable(applicable, func(i, j int) bool {
		si, sj := applicable[i].Specificity(), applicable[j].Specificity()
		if si != sj {
			return si > sj
		}
		return applicable[i].Metadata.Name < applicable[j].Metadata.Name
	})
	eff := Effective{From: map[string]string{}}
	rank := map[string]Specificity{}
	for _, p := range applicable {
		sp := p.Specificity()
		mergeSpec(&eff.Spec, &p.Spec, func(leaf string) bool {
			winner, set := eff.From[leaf]
			if !set {
				eff.From[leaf] = p.Metadata.Name
				rank[leaf] = sp
				return true
			}
			if rank[leaf] == sp {
				eff.addConflict(Conflict{Service: service, Route: route, Source: source, Field: leaf, Winner: winner}, p.Metadata.Name)
			}
			return false
		})
	}
	return eff
}

func (e *Effective) addConflict(c Conflict, other string) {
	for i := range e.Conflicts {
		if e.Conflicts[i].Field == c.Field {
			e.Conflicts[i].Policies = append(e.Conflicts[i].Policies, other)
			return
		}
	}
	c.Policies = []string{c.Winner, other}
	e.Conflicts = append(e.Conflicts, c)
}

// ExperimentsFor returns the experiments that apply to calls from source to
// service on route, sorted by name. The first one is the one in force.
func (s *Set) ExperimentsFor(source, service, route string) []*ChaosExperiment {
	var out []*ChaosExperiment
	for _, name := range sortedKeys(s.Experiments) {
		e := s.Experiments[name]
		t := e.Spec.Target
		if t.Service != service || !sourceMatches(e.Spec.Sources, source) {
			continue
		}
		if (t.Route == nil && route != "") || (t.Route != nil && t.Route.PathPrefix != route) {
			continue
		}
		out = append(out, e)
	}
	return out
}

// Conflicts returns every conflict in the set across all services, routes
// and sources, sorted.
func (s *Set) Conflicts() []Conflict {
	var out []Conflict
	for _, svc := range s.ServiceNames() {
		routes := append([]string{""}, s.Routes(svc)...)
		for _, src := range s.policySources(svc) {
			for _, r := range routes {
				out = append(out, s.Resolve(src, svc, r).Conflicts...)
			}
		}
	}
	return dedupConflicts(out)
}

// policySources returns "" and the sources named by the policies that may
// apply to service, sorted. Calls from any other source resolve like "".
func (s *Set) policySources(service string) []string {
	seen := map[string]bool{"": true}
	for _, p := range s.policiesFor(service) {
		for _, src := range p.Spec.Sources {
			seen[src] = true
		}
	}
	return sortedKeys(seen)
}

// dedupConflicts drops conflicts that repeat for several sources or routes
// with the same field and policies, keeping the first.
func dedupConflicts(cs []Conflict) []Conflict {
	seen := map[string]bool{}
	var out []Conflict
	for _, c := range cs {
		key := c.Service + "|" + c.Route + "|" + c.Field + "|" + strings.Join(c.Policies, ",")
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, c)
	}
	return out
}
