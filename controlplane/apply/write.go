package apply

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// Put writes one resource with the checks of Apply (validation,
// guardrails, no new conflict of equal specificity). expectRev > 0 makes it
// a compare-and-swap: a *store.ConflictError when the stored revision
// differs. A metadata.source left empty keeps the stored one. Writing an
// experiment starts it; a running experiment is not replaced by another spec.
func (a *Applier) Put(ctx context.Context, r policies.Resource, expectRev int64, who string) (*api.WriteResult[policies.Resource], error) {
	kind, meta := r.GetKind(), r.GetMeta()
	if vs := policies.Validate(r, a.opts); len(vs) > 0 {
		return nil, &InvalidError{Violations: vs}
	}
	current, _, _, err := a.store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the store: %w", err)
	}
	old := current.Get(kind, meta.Name)
	var oldRev int64
	if old != nil {
		oldRev = old.GetMeta().Revision
		if meta.Source == "" {
			meta.Source = old.GetMeta().Source
		}
	}
	if expectRev > 0 && expectRev != oldRev {
		return nil, &store.ConflictError{Kind: kind, Name: meta.Name, Expected: expectRev, Actual: oldRev}
	}
	res := &api.WriteResult[policies.Resource]{Kind: kind, Name: meta.Name}
	if old != nil && sameResource(old, r) {
		res.Action, res.Revision, res.Resource = api.ActionUnchanged, oldRev, old
		res.Warnings = orEmpty(lintFor(current, []api.ApplyItem{{Kind: kind, Name: meta.Name}}))
		return res, nil
	}
	if old != nil && kind == policies.KindExperiment {
		return nil, api.NewProblem(http.StatusConflict, api.ProblemConflict, fmt.Sprintf(
			"experiment %s is running with another spec (revision %d); stop it first (DELETE /v1/experiments/%s), then start the new one", meta.Name, oldRev, meta.Name))
	}
	next := current.Clone()
	next.Add(r)
	if err := newConflicts(current, next); err != nil {
		return nil, err
	}
	op := store.Op{Put: r, ExpectRev: oldRev}
	res.Action = api.ActionUpdated
	if old == nil {
		op.ExpectRev, res.Action = -1, api.ActionCreated
	}
	rev, err := a.store.ApplyAs(ctx, []store.Op{op}, who)
	if err != nil {
		return nil, err
	}
	meta.Revision = rev
	res.Revision, res.Resource = rev, r
	res.Warnings = orEmpty(lintFor(next, []api.ApplyItem{{Kind: kind, Name: meta.Name}}))
	return res, nil
}

// Delete deletes one resource, or stops an experiment (recording
// who). expectRev > 0 makes it a compare-and-swap. A deletion that would
// leave two policies of equal specificity in conflict is refused.
func (a *Applier) Delete(ctx context.Context, kind, name string, expectRev int64, who string) (*api.WriteResult[policies.Resource], error) {
	current, _, _, err := a.store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the store: %w", err)
	}
	old := current.Get(kind, name)
	if old == nil {
		return nil, fmt.Errorf("%s %q: %w", kind, name, store.ErrNotFound)
	}
	oldRev := old.GetMeta().Revision
	if expectRev > 0 && expectRev != oldRev {
		return nil, &store.ConflictError{Kind: kind, Name: name, Expected: expectRev, Actual: oldRev}
	}
	next := current.Clone()
	next.Remove(kind, name)
	if err := newConflicts(current, next); err != nil {
		return nil, err
	}
	// The comparison on the revision read makes the checks above hold for
	// what is actually deleted.
	rev, err := a.store.ApplyAs(ctx, []store.Op{{DeleteKind: kind, DeleteName: name, ExpectRev: oldRev}}, who)
	if err != nil {
		return nil, err
	}
	return &api.WriteResult[policies.Resource]{Kind: kind, Name: name, Action: api.ActionDeleted, Revision: rev, Warnings: orEmpty(lintAbout(next, name))}, nil
}

// lintAbout returns the findings that concern resources referring to name
// (a fallback or a target that no longer exists), so a deletion tells what
// it leaves dangling.
func lintAbout(set *policies.Set, name string) []policies.Finding {
	var out []policies.Finding
	for _, f := range policies.Lint(set) {
		if findingMentions(f, name) {
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
