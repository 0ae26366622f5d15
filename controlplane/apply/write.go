package apply

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/view"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// Put writes one resource with the checks of Apply (validation,
// guardrails, no new conflict of equal specificity). expectRev > 0 makes it
// a compare-and-swap: a *store.ConflictError when the stored revision
// differs; without it the last writer wins (a write that loses a race with
// another checks again on what the other wrote, it is never refused for a
// revision it did not send). A metadata.source left empty keeps the stored
// one. Writing an experiment starts it; a running experiment is not replaced
// by another spec. A resource a directory sync owns is refused with an
// *OwnedError unless ctx carries WithForce.
func (a *Applier) Put(ctx context.Context, r policies.Resource, expectRev int64, who string) (*api.WriteResult[policies.Resource], error) {
	kind, meta := r.GetKind(), r.GetMeta()
	if vs := policies.Validate(r, a.opts); len(vs) > 0 {
		return nil, &InvalidError{Violations: vs}
	}
	source := meta.Source
	meta.Revision = 0
	names := append(guardsOf(r), resourceKey(kind, meta.Name))
	defer a.locks.lock(false, names...)()
	var res *api.WriteResult[policies.Resource]
	err := a.guarded(ctx, who, false, names, func(x *view.Index) (plan, error) {
		res = &api.WriteResult[policies.Resource]{Kind: kind, Name: meta.Name}
		old := x.Get(kind, meta.Name)
		var oldRev int64
		meta.Source = source
		if old != nil {
			oldRev = old.GetMeta().Revision
			if meta.Source == "" {
				meta.Source = old.GetMeta().Source
			}
		}
		if err := a.checkExpect(ctx, x, kind, meta.Name, expectRev, oldRev); err != nil {
			return plan{}, err
		}
		current := x.Neighbourhood(r)
		if old != nil && sameResource(old, r) {
			res.Action, res.Revision, res.Resource = api.ActionUnchanged, oldRev, old
			res.Warnings = orEmpty(lintFor(current, []api.ApplyItem{{Kind: kind, Name: meta.Name}}))
			return plan{finish: func(int64) {}}, nil
		}
		if old != nil && kind == policies.KindExperiment {
			return plan{}, api.NewProblem(http.StatusConflict, api.ProblemConflict, fmt.Sprintf(
				"experiment %s is running with another spec (revision %d); stop it first (DELETE /v1/experiments/%s), then start the new one", meta.Name, oldRev, meta.Name))
		}
		if err := owned(old, "", forced(ctx)); err != nil {
			return plan{}, err
		}
		next := current.Clone()
		next.Add(r)
		if err := newConflicts(current, next); err != nil {
			return plan{}, err
		}
		res.Action = api.ActionUpdated
		if old == nil {
			res.Action = api.ActionCreated
		}
		res.Warnings = orEmpty(lintFor(next, []api.ApplyItem{{Kind: kind, Name: meta.Name}}))
		return plan{
			ops:    []store.Op{{Put: r, ExpectRev: expectRev}},
			guards: guardsOf(r, old),
			finish: func(rev int64) { res.Revision, res.Resource = rev, r },
		}, nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// Delete deletes one resource, or stops an experiment (recording
// who). expectRev > 0 makes it a compare-and-swap; without it a concurrent
// write never makes it fail with a conflict. A deletion that would leave two
// policies of equal specificity in conflict is refused, as is one of what a
// directory sync owns (unless ctx carries WithForce).
func (a *Applier) Delete(ctx context.Context, kind, name string, expectRev int64, who string) (*api.WriteResult[policies.Resource], error) {
	names := []string{resourceKey(kind, name)}
	defer a.locks.lock(false, names...)()
	var res *api.WriteResult[policies.Resource]
	err := a.guarded(ctx, who, false, names, func(x *view.Index) (plan, error) {
		old := x.Get(kind, name)
		if old == nil {
			// The view may lag behind a write of another replica: ask the store.
			r, err := a.store.Get(ctx, kind, name)
			switch {
			case err == nil && r.GetMeta().Revision > x.Revision():
				return plan{}, &store.StaleError{Revision: r.GetMeta().Revision}
			case err != nil && !errors.Is(err, store.ErrNotFound):
				return plan{}, err
			}
			return plan{}, fmt.Errorf("%s %q: %w", kind, name, store.ErrNotFound)
		}
		if err := a.checkExpect(ctx, x, kind, name, expectRev, old.GetMeta().Revision); err != nil {
			return plan{}, err
		}
		if err := owned(old, "", forced(ctx)); err != nil {
			return plan{}, err
		}
		refs := x.Referrers(name)
		current := x.Neighbourhood(append(refs, old)...)
		next := current.Clone()
		next.Remove(kind, name)
		if err := newConflicts(current, next); err != nil {
			return plan{}, err
		}
		res = &api.WriteResult[policies.Resource]{Kind: kind, Name: name, Action: api.ActionDeleted, Warnings: orEmpty(lintAbout(next, refs, name))}
		return plan{
			ops:    []store.Op{{DeleteKind: kind, DeleteName: name, ExpectRev: expectRev}},
			guards: guardsOf(old),
			finish: func(rev int64) { res.Revision = rev },
		}, nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// lintAbout returns the findings that concern resources referring to name
// (refs: a fallback or a target that no longer exists), so a deletion tells
// what it leaves dangling.
func lintAbout(set *policies.Set, refs []policies.Resource, name string) []policies.Finding {
	about := map[string]bool{}
	for _, r := range refs {
		about[resourceKey(r.GetKind(), r.GetMeta().Name)] = true
	}
	var out []policies.Finding
	for _, f := range policies.Lint(set) {
		if about[resourceKey(f.Kind, f.Name)] && findingMentions(f, name) {
			out = append(out, f)
		}
	}
	return out
}

// findingMentions reports whether a finding names a resource ("service
// \"payments\" does not exist").
func findingMentions(f policies.Finding, name string) bool {
	return strings.Contains(f.Message, strconv.Quote(name))
}

// orEmpty makes a nil list of findings an empty one, so answers always carry
// a "warnings" array.
func orEmpty(fs []policies.Finding) []policies.Finding {
	if fs == nil {
		return []policies.Finding{}
	}
	return fs
}
