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
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/view"
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
	// Force allows changing what a directory sync owns (see OwnedError).
	Force bool
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

// OwnedError refuses a write to a resource that a directory sync owns
// (its metadata.source is the sync's "dir:<path>"): the sync would put the
// file's version back on its next pass, so the change would vanish.
type OwnedError struct {
	Kind, Name, Source string
}

func (e *OwnedError) Error() string {
	return fmt.Sprintf("%s %s is owned by the directory sync %s, which would revert this change on its next pass; change the file in that directory instead, or repeat the write with force=true (bulwarkctl --force) to change it until then",
		e.Kind, e.Name, e.Source)
}

// SyncSourcePrefix starts the source of every resource a directory sync writes.
const SyncSourcePrefix = "dir:"

type forceKey struct{}

// WithForce marks the single writes (Put, Delete) made with ctx as allowed
// to change what a directory sync owns.
func WithForce(ctx context.Context) context.Context { return context.WithValue(ctx, forceKey{}, true) }

func forced(ctx context.Context) bool { v, _ := ctx.Value(forceKey{}).(bool); return v }

// owned refuses a change of stored unless the writer is its directory sync
// (writer is stored's source) or forces it.
func owned(stored policies.Resource, writer string, force bool) error {
	if stored == nil || force {
		return nil
	}
	src := stored.GetMeta().Source
	if !strings.HasPrefix(src, SyncSourcePrefix) || writer == src {
		return nil
	}
	return &OwnedError{Kind: stored.GetKind(), Name: stored.GetMeta().Name, Source: src}
}

// Applier writes resources to the store with the checks every write gets:
// validation against the replica's limits, guardrails, and no new conflict
// of equal specificity. Checks read an indexed view of the store (see
// controlplane/view) and look only at what a write touches; a guarded
// transaction makes them hold for what is written (see guardsOf).
type Applier struct {
	store *store.Store
	opts  policies.ValidateOptions
	view  *view.View
	locks locks
	// written is what this applier wrote, for its next checks to see.
	written written
}

// New returns an applier that writes to st and validates with opts. Until
// Run runs, every write reads the whole store.
func New(st *store.Store, opts policies.ValidateOptions) *Applier {
	return &Applier{store: st, opts: opts, view: view.New(st, nil)}
}

// Run keeps the applier's view of the store up to date (following the
// store's watch) until ctx ends.
func (a *Applier) Run(ctx context.Context) { a.view.Run(ctx) }

// ValidateOptions returns the validation limits of this control plane.
func (a *Applier) ValidateOptions() policies.ValidateOptions { return a.opts }

func resourceKey(kind, name string) string { return kind + "/" + name }

// Apply writes a bundle in one transaction: all or nothing. It validates
// every resource, refuses new conflicts of equal specificity, computes what
// changes, prunes when asked, and returns lint warnings for the result.
//
// A resource's metadata.revision, when set, makes its write a
// compare-and-swap (a *store.ConflictError names it). Its metadata.source
// is req.Source when set, else the one it carries, else the stored one.
// Resources whose labels, source and spec equal the stored ones are
// "unchanged" and not written. Changing what a directory sync owns needs
// req.Source to be that sync's, or req.Force.
func (a *Applier) Apply(ctx context.Context, req Request) (*api.ApplyResult, error) {
	if err := a.checkBundle(req.Resources); err != nil {
		return nil, err
	}
	if req.Prune && req.Source == "" {
		return nil, &InvalidError{Violations: policies.Violations{{Field: "source", Message: "prune needs a source: it deletes only what that source applied"}}}
	}
	var ran map[string]bool
	if req.SkipRanExperiments {
		var err error
		if ran, err = a.ranExperiments(ctx); err != nil {
			return nil, err
		}
	}
	sources := make([]string, len(req.Resources))
	expects := make([]int64, len(req.Resources))
	for i, r := range req.Resources {
		sources[i], expects[i] = r.GetMeta().Source, r.GetMeta().Revision
		r.GetMeta().Revision = 0
	}
	defer a.locks.lock(true)()
	var res *applyPlan
	err := a.guarded(ctx, req.Who, req.DryRun, nil, func(x *view.Index) (plan, error) {
		var err error
		res, err = a.planApply(ctx, x, req, ran, sources, expects)
		if err != nil {
			return plan{}, err
		}
		return res.plan, nil
	})
	if err != nil {
		return nil, err
	}
	return &res.ApplyResult, nil
}

// applyPlan is an apply's answer with the plan that writes it.
type applyPlan struct {
	api.ApplyResult
	plan plan
}

// planApply is one attempt of Apply on the view x.
func (a *Applier) planApply(ctx context.Context, x *view.Index, req Request, ran map[string]bool, sources []string, expects []int64) (*applyPlan, error) {
	res := &applyPlan{ApplyResult: api.ApplyResult{Revision: x.Revision(), DryRun: req.DryRun}}
	var (
		ops      []store.Op
		touched  []policies.Resource
		conflict []error
	)
	declared := map[string]bool{}
	for i, r := range req.Resources {
		meta := r.GetMeta()
		old := x.Get(r.GetKind(), meta.Name)
		switch {
		case req.Source != "":
			meta.Source = req.Source
		case sources[i] != "":
			meta.Source = sources[i]
		case old != nil:
			meta.Source = old.GetMeta().Source
		default:
			meta.Source = ""
		}
		declared[resourceKey(r.GetKind(), meta.Name)] = true
		touched = append(touched, r)
		if old != nil {
			touched = append(touched, old)
		}
		var oldRev int64
		if old != nil {
			oldRev = old.GetMeta().Revision
		}
		if err := a.checkExpect(ctx, x, r.GetKind(), meta.Name, expects[i], oldRev); err != nil {
			var se *store.StaleError
			if errors.As(err, &se) {
				return nil, err
			}
			conflict = append(conflict, err)
			continue
		}
		item := api.ApplyItem{Kind: r.GetKind(), Name: meta.Name}
		switch {
		case old == nil && ran[experimentKey(r)]:
			item.Action = api.ActionSkipped
		case old == nil:
			item.Action = api.ActionCreated
			ops = append(ops, store.Op{Put: r, ExpectRev: expects[i]})
		case sameResource(old, r):
			item.Action, item.Revision = api.ActionUnchanged, oldRev
		case r.GetKind() == policies.KindExperiment && specJSON(old) == specJSON(r):
			// The same game day, started by someone else: leave it running
			// (and owned by whoever started it).
			item.Action, item.Revision = api.ActionUnchanged, oldRev
		case r.GetKind() == policies.KindExperiment:
			// A running experiment is not edited in place: stop it first.
			return nil, &InvalidError{Violations: policies.Violations{{Field: "metadata.name", Message: fmt.Sprintf("experiment %s is running with another spec; stop it before starting a new one", meta.Name)}}}
		default:
			if err := owned(old, req.Source, req.Force); err != nil {
				conflict = append(conflict, err)
				continue
			}
			item.Action = api.ActionUpdated
			ops = append(ops, store.Op{Put: r, ExpectRev: expects[i]})
		}
		res.Items = append(res.Items, item)
	}
	if len(conflict) > 0 {
		return nil, errors.Join(conflict...)
	}
	var pruned []policies.Resource
	if req.Prune {
		for _, old := range x.OwnedBy(req.Source) {
			meta := old.GetMeta()
			if declared[resourceKey(old.GetKind(), meta.Name)] {
				continue
			}
			ops = append(ops, store.Op{DeleteKind: old.GetKind(), DeleteName: meta.Name})
			pruned = append(pruned, old)
			touched = append(touched, old)
			res.Items = append(res.Items, api.ApplyItem{Kind: old.GetKind(), Name: meta.Name, Action: api.ActionDeleted})
		}
	}
	current := x.Neighbourhood(touched...)
	next := current.Clone()
	for i, r := range req.Resources {
		if res.Items[i].Action != api.ActionSkipped {
			next.Add(r)
		}
	}
	for _, old := range pruned {
		next.Remove(old.GetKind(), old.GetMeta().Name)
	}
	if err := newConflicts(current, next); err != nil {
		return nil, err
	}
	res.Warnings = lintFor(next, res.Items)
	guards := guardsOf(touched...)
	res.plan = plan{ops: ops, guards: guards, bundle: len(ops)+len(guards) > a.store.MaxTxnOps()/2,
		finish: func(rev int64) {
			if req.DryRun || len(ops) == 0 {
				return
			}
			res.Revision = rev
			for i := range res.Items {
				if a := res.Items[i].Action; a == api.ActionCreated || a == api.ActionUpdated || a == api.ActionDeleted {
					res.Items[i].Revision = rev
				}
			}
		}}
	return res, nil
}

// checkBundle validates every resource and refuses duplicates.
func (a *Applier) checkBundle(rs []policies.Resource) error {
	var vs policies.Violations
	seen := map[string]int{}
	for i, r := range rs {
		if len(vs) > policies.MaxViolations {
			break
		}
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
		return &InvalidError{Violations: vs.Bounded()}
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
