package view_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/view"
	"github.com/bulwarkmesh/bulwark/policies"
)

// randomSet is a small mesh with what makes lint interesting: labels and
// selectors, "*", routes, sources, fallbacks (missing ones and cycles),
// conflicts, gRPC services, dependencies (some missing), experiments (some
// shadowed, some on missing services).
func randomSet(r *rand.Rand) *policies.Set {
	set := policies.NewSet()
	d := policies.Dur
	nsvc := 3 + r.IntN(6)
	name := func(i int) string { return fmt.Sprintf("s%d", i) }
	pick := func() string {
		if r.IntN(8) == 0 {
			return "missing"
		}
		return name(r.IntN(nsvc))
	}
	for i := range nsvc {
		s := &policies.Service{TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindService},
			Metadata: policies.Metadata{Name: name(i), Labels: map[string]string{"tier": []string{"a", "b"}[r.IntN(2)]}},
			Spec:     policies.ServiceSpec{Protocol: []string{"http", "grpc"}[r.IntN(2)], Port: 8080}}
		if r.IntN(3) == 0 {
			s.Spec.Dependencies = []string{pick(), pick()}
		}
		set.Add(s)
	}
	for i := range 4 + r.IntN(10) {
		p := &policies.ResiliencePolicy{TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindPolicy},
			Metadata: policies.Metadata{Name: fmt.Sprintf("p%d", i)}}
		switch r.IntN(6) {
		case 0:
			p.Spec.Target.Service = "*"
		case 1:
			p.Spec.Target.Selector = map[string]string{"tier": []string{"a", "b"}[r.IntN(2)]}
		case 2:
			p.Spec.Target = policies.Target{Service: pick(), Route: &policies.RouteMatch{PathPrefix: "/charge"}}
		default:
			p.Spec.Target.Service = pick()
		}
		if r.IntN(4) == 0 {
			p.Spec.Sources = []string{pick()}
		}
		if r.IntN(2) == 0 {
			p.Spec.Timeouts = &policies.Timeouts{Request: d(time.Duration(1+r.IntN(3)) * time.Second)}
		}
		if r.IntN(2) == 0 {
			p.Spec.Retries = &policies.Retries{Attempts: policies.Ptr(r.IntN(4)), PerTryTimeout: d(time.Duration(1+r.IntN(3)) * time.Second), On: []string{"5xx"}}
		}
		if p.Spec.Target.Route == nil && r.IntN(3) == 0 {
			p.Spec.Fallback = &policies.Fallback{Service: pick()}
		}
		if p.Spec.Target.Route == nil && r.IntN(4) == 0 {
			p.Spec.CircuitBreaker = &policies.CircuitBreaker{Consecutive5xx: policies.Ptr(5), MaxEjectionPercent: policies.Ptr(100)}
		}
		set.Add(p)
	}
	for i := range r.IntN(4) {
		e := &policies.ChaosExperiment{TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindExperiment},
			Metadata: policies.Metadata{Name: fmt.Sprintf("e%d", i)},
			Spec:     policies.ExperimentSpec{Target: policies.Target{Service: pick()}, Abort: &policies.Abort{Percent: 10, HTTPStatus: 503}, Duration: d(time.Minute)}}
		if r.IntN(3) == 0 {
			e.Spec.Sources = []string{pick()}
		}
		set.Add(e)
	}
	return set
}

func about(fs []policies.Finding, r policies.Resource) []policies.Finding {
	out := []policies.Finding{}
	for _, f := range fs {
		if f.Kind == r.GetKind() && f.Name == r.GetMeta().Name {
			out = append(out, f)
		}
	}
	return out
}

// The findings a write gets, computed on the neighbourhood of what it
// touches, equal those a lint of the whole set gives for it: for every
// resource of many random sets as stored, and for a changed version of it
// as a write would store it.
func TestNeighbourhoodLintMatchesWholeSet(t *testing.T) {
	checked := 0
	for seed := range uint64(50) {
		r := rand.New(rand.NewPCG(seed, 7))
		set := randomSet(r)
		x := view.FromSet(set, 1)
		whole := policies.Lint(set)
		for _, res := range set.Resources() {
			require.Equal(t, about(whole, res), about(policies.Lint(x.Neighbourhood(res)), res), "seed %d, %s %s as stored", seed, res.GetKind(), res.GetMeta().Name)
			checked++
		}
		// Writes: each resource replaced by one of another random set of the
		// same kind (its name kept), as Put checks it.
		other := randomSet(rand.New(rand.NewPCG(seed, 8)))
		for _, w := range other.Resources() {
			if set.Get(w.GetKind(), w.GetMeta().Name) == nil && r.IntN(2) == 0 {
				continue // some writes create, most replace
			}
			next := set.Clone()
			next.Add(w)
			sub := x.Neighbourhood(w).Clone()
			sub.Add(w)
			require.Equal(t, about(policies.Lint(next), w), about(policies.Lint(sub), w), "seed %d, write of %s %s", seed, w.GetKind(), w.GetMeta().Name)
			checked++
		}
	}
	require.Greater(t, checked, 700)
}

// The conflicts a write would create, found on its neighbourhood, are the
// ones the whole set would have.
func TestNeighbourhoodConflictsMatchWholeSet(t *testing.T) {
	for seed := range uint64(50) {
		set := randomSet(rand.New(rand.NewPCG(seed, 7)))
		x := view.FromSet(set, 1)
		other := randomSet(rand.New(rand.NewPCG(seed, 9)))
		for _, w := range other.Resources() {
			next := set.Clone()
			next.Add(w)
			sub := x.Neighbourhood(w)
			subNext := sub.Clone()
			subNext.Add(w)
			require.Equal(t, fresh(set.Conflicts(), next.Conflicts()), fresh(sub.Conflicts(), subNext.Conflicts()), "seed %d, write of %s %s", seed, w.GetKind(), w.GetMeta().Name)
		}
	}
}

func fresh(before, after []policies.Conflict) []string {
	had := map[string]bool{}
	for _, c := range before {
		had[c.String()] = true
	}
	out := []string{}
	for _, c := range after {
		if !had[c.String()] {
			out = append(out, c.String())
		}
	}
	return out
}
