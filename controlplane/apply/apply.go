// Package apply writes resources: one at a time (Put, Delete, with
// compare-and-swap on a revision) or as a bundle in one transaction (Apply:
// all or nothing, with dry run and prune by source). Every write is
// validated, refuses new conflicts of equal specificity, and answers with
// the lint findings that concern what it touched.
//
// It imports the store and the API types; it must not import the admin
// API, gitops, the xDS server or the root controlplane package.
package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// Request is a bundle to write atomically.
type Request struct {
	Resources []policies.Resource
	// Source records who applied the resources ("dir:/srv/policies", "ci").
	Source string
	// Prune deletes what Source applied before and no longer declares.
	Prune bool
	// DryRun computes the result without writing.
	DryRun bool
	// Who is recorded on started experiments.
	Who string
	// SkipRanExperiments leaves out experiments whose identical spec already
	// ran (directory sync: a declared game day runs once, not forever).
	SkipRanExperiments bool
}

// InvalidError lists the violations of every invalid resource of a bundle.
type InvalidError struct {
	Violations policies.Violations
}

func (e *InvalidError) Error() string { return "invalid: " + e.Violations.Error() }

// PolicyConflictError refuses a write that would create a conflict of equal
// specificity; it names the policies involved.
type PolicyConflictError struct {
	Conflicts []policies.Conflict
}

func (e *PolicyConflictError) Error() string {
	msgs := make([]string, len(e.Conflicts))
	for i, c := range e.Conflicts {
		msgs[i] = c.String()
	}
	return "conflicting policies: " + strings.Join(msgs, "; ")
}

// Applier writes resources to the store with the checks every write gets:
// validation against the replica's limits, guardrails, and no new conflict
// of equal specificity.
type Applier struct {
	store *store.Store
	opts  policies.ValidateOptions
}

// New returns an applier that writes to st and validates with opts.
func New(st *store.Store, opts policies.ValidateOptions) *Applier {
	return &Applier{store: st, opts: opts}
}

// ValidateOptions returns the validation limits of this control plane.
func (a *Applier) ValidateOptions() policies.ValidateOptions { return a.opts }

func resourceKey(kind, name string) string { return kind + "/" + name }

// Apply writes a bundle in one transaction: all or nothing. It validates
// every resource, refuses new conflicts of equal specificity, computes what
// changes, prunes when asked, and returns lint warnings for the result.
func (a *Applier) Apply(ctx context.Context, req Request) (*api.ApplyResult, error) {
	if err := a.checkBundle(req.Resources); err != nil {
		return nil, err
	}
	current, rev, _, err := a.store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the store: %w", err)
	}
	var ran map[string]bool
	if req.SkipRanExperiments {
		if ran, err = a.ranExperiments(ctx); err != nil {
			return nil, err
		}
	}
	next := current.Clone()
	res := &api.ApplyResult{Revision: rev, DryRun: req.DryRun}
	var ops []store.Op
	declared := map[string]bool{}
	for _, r := range req.Resources {
		meta := r.GetMeta()
		meta.Source = req.Source
		declared[resourceKey(r.GetKind(), meta.Name)] = true
		old := current.Get(r.GetKind(), meta.Name)
		item := api.ApplyItem{Kind: r.GetKind(), Name: meta.Name}
		switch {
		case old == nil && ran[experimentKey(r)]:
			item.Action = api.ActionSkipped
		case old == nil:
			item.Action = api.ActionCreated
			ops = append(ops, store.Op{Put: r, ExpectRev: -1})
		case sameResource(old, r):
			item.Action, item.Revision = api.ActionUnchanged, old.GetMeta().Revision
		case r.GetKind() == policies.KindExperiment && specJSON(old) == specJSON(r):
			// The same game day, started by someone else: leave it running
			// (and owned by whoever started it).
			item.Action, item.Revision = api.ActionUnchanged, old.GetMeta().Revision
		case r.GetKind() == policies.KindExperiment:
			// A running experiment is not edited in place: stop it first.
			return nil, &InvalidError{Violations: policies.Violations{{Field: "metadata.name", Message: fmt.Sprintf("experiment %s is running with another spec; stop it before starting a new one", meta.Name)}}}
		default:
			item.Action = api.ActionUpdated
			ops = append(ops, store.Op{Put: r, ExpectRev: old.GetMeta().Revision})
		}
		if item.Action != api.ActionSkipped {
			next.Add(r)
		}
		res.Items = append(res.Items, item)
	}
	if req.Prune {
		if req.Source == "" {
			return nil, &InvalidError{Violations: policies.Violations{{Field: "source", Message: "prune needs a source: it deletes only what that source applied"}}}
		}
		for _, old := range current.Resources() {
			meta := old.GetMeta()
			if meta.Source != req.Source || declared[resourceKey(old.GetKind(), meta.Name)] {
				continue
			}
			ops = append(ops, store.Op{DeleteKind: old.GetKind(), DeleteName: meta.Name, ExpectRev: meta.Revision})
			next.Remove(old.GetKind(), meta.Name)
			res.Items = append(res.Items, api.ApplyItem{Kind: old.GetKind(), Name: meta.Name, Action: api.ActionDeleted})
		}
	}
	if err := newConflicts(current, next); err != nil {
		return nil, err
	}
	res.Warnings = lintFor(next, res.Items)
	if req.DryRun || len(ops) == 0 {
		return res, nil
	}
	wrote, err := a.store.ApplyAs(ctx, ops, req.Who)
	if err != nil {
		return nil, err
	}
	res.Revision = wrote
	for i := range res.Items {
		if a := res.Items[i].Action; a == api.ActionCreated || a == api.ActionUpdated || a == api.ActionDeleted {
			res.Items[i].Revision = wrote
		}
	}
	return res, nil
}

// checkBundle validates every resource and refuses duplicates.
func (a *Applier) checkBundle(rs []policies.Resource) error {
	var vs policies.Violations
	seen := map[string]int{}
	for i, r := range rs {
		prefix := fmt.Sprintf("items[%d]", i)
		if r.GetMeta().Name != "" {
			prefix = fmt.Sprintf("items[%d] (%s %s)", i, r.GetKind(), r.GetMeta().Name)
		}
		for _, v := range policies.Validate(r, a.opts) {
			v.Field = prefix + "." + v.Field
			vs = append(vs, v)
		}
		key := resourceKey(r.GetKind(), r.GetMeta().Name)
		if j, dup := seen[key]; dup {
			vs = append(vs, policies.Violation{Field: prefix + ".metadata.name", Message: fmt.Sprintf("duplicate of items[%d]", j)})
		}
		seen[key] = i
	}
	if len(vs) > 0 {
		return &InvalidError{Violations: vs}
	}
	return nil
}

// newConflicts refuses conflicts that next has and current has not.
func newConflicts(current, next *policies.Set) error {
	had := map[string]bool{}
	for _, c := range current.Conflicts() {
		had[conflictKey(c)] = true
	}
	var fresh []policies.Conflict
	for _, c := range next.Conflicts() {
		if !had[conflictKey(c)] {
			fresh = append(fresh, c)
		}
	}
	if len(fresh) > 0 {
		return &PolicyConflictError{Conflicts: fresh}
	}
	return nil
}

func conflictKey(c policies.Conflict) string {
	ps := append([]string(nil), c.Policies...)
	sort.Strings(ps)
	return c.Service + "|" + c.Route + "|" + c.Source + "|" + c.Field + "|" + strings.Join(ps, ",")
}

// lintFor returns the lint findings of the whole set that concern the
// resources of an apply.
func lintFor(set *policies.Set, items []api.ApplyItem) []policies.Finding {
	touched := map[string]bool{}
	for _, it := range items {
		touched[resourceKey(it.Kind, it.Name)] = true
	}
	var out []policies.Finding
	for _, f := range policies.Lint(set) {
		if touched[resourceKey(f.Kind, f.Name)] {
			out = append(out, f)
		}
	}
	return out
}

// sameResource compares what a user declares: labels and spec.
func sameResource(a, b policies.Resource) bool {
	if a.GetKind() != b.GetKind() {
		return false
	}
	if !reflect.DeepEqual(normLabels(a.GetMeta().Labels), normLabels(b.GetMeta().Labels)) || a.GetMeta().Source != b.GetMeta().Source {
		return false
	}
	return specJSON(a) == specJSON(b)
}

func normLabels(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func specJSON(r policies.Resource) string {
	var spec any
	switch v := r.(type) {
	case *policies.Service:
		spec = v.Spec
	case *policies.ResiliencePolicy:
		spec = v.Spec
	case *policies.ChaosExperiment:
		spec = v.Spec
	}
	b, _ := json.Marshal(spec)
	return string(b)
}

// experimentKey identifies an experiment by name and spec.
func experimentKey(r policies.Resource) string {
	if r.GetKind() != policies.KindExperiment {
		return ""
	}
	return r.GetMeta().Name + "|" + specJSON(r)
}

// ranExperiments returns the experiments (name and spec) that already ran.
func (a *Applier) ranExperiments(ctx context.Context) (map[string]bool, error) {
	hist, err := a.store.History(ctx)
	if err != nil {
		return nil, fmt.Errorf("read experiment history: %w", err)
	}
	out := map[string]bool{}
	for _, e := range hist {
		out[experimentKey(e)] = true
	}
	return out, nil
}
