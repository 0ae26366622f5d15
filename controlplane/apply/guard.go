package apply

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/bulwarkmesh/bulwark/controlplane/view"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// Guards. A write's checks (conflicts of equal specificity, an "unchanged"
// answer, the source kept from the stored resource) read part of the store;
// the write's transaction compares the guard of each part read and touches
// the guards of what it changes (store.Guard), so two writes whose checks
// overlap cannot both commit on what they read: the later one re-reads and
// checks again.
//
// Conflicts only arise between policies of equal specificity, so:
//   - a policy that names a service (with or without a route) reads and
//     changes "service/<name>": only policies naming that service can
//     conflict with it;
//   - a "*" or selector policy reads and changes "broad", as does every
//     service write (which services exist, and their labels, decide what a
//     broad policy applies to);
//   - a service write also reads and changes "service/<name>" (creating a
//     service makes the conflicts of the policies naming it real).
//
// Experiments have no conflicts; the comparison on their own key suffices.
const guardBroad = "broad"

// guardsOf returns the guards of the checks of a write of rs (their stored
// and new versions), sorted and without repeats.
func guardsOf(rs ...policies.Resource) []string {
	seen := map[string]bool{}
	for _, r := range rs {
		switch v := r.(type) {
		case *policies.Service:
			seen["service/"+v.Metadata.Name] = true
			seen[guardBroad] = true
		case *policies.ResiliencePolicy:
			if t := v.Spec.Target.Service; t != "" && t != "*" {
				seen["service/"+t] = true
			} else {
				seen[guardBroad] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for g := range seen {
		out = append(out, g)
	}
	sort.Strings(out)
	return out
}

// maxAttempts bounds how often a write re-checks after losing a race.
// Writes of one replica queue on local locks first, so only writes of other
// replicas (or straight to etcd) make it lose.
const maxAttempts = 10

// ErrBusy: a write lost every race it ran (maxAttempts); nothing was written.
var ErrBusy = errors.New("other writes kept changing what this write depends on; nothing was written; retry")

// plan is what one attempt of a write decided.
type plan struct {
	ops    []store.Op
	guards []string
	bundle bool
	// finish completes the answer once the write committed at rev (or, with
	// no ops, once the check ran on the view at rev).
	finish func(rev int64)
}

// guarded runs a write: check on the view (try), then one guarded
// transaction; on a lost race it waits for the view to see the winner and
// checks again. try runs under the view's read lock and must not keep what
// it reads. names are the write's keys and guards (nil for a bundle): the
// view must first hold every earlier write of this applier to any of them
// (a client sees its own writes), and no more, so writes to other targets
// do not wait for each other.
func (a *Applier) guarded(ctx context.Context, who string, dryRun bool, names []string, try func(x *view.Index) (plan, error)) error {
	atLeast := a.written.since(names)
	for attempt := 1; ; attempt++ {
		var (
			p    plan
			read int64
		)
		err := a.view.Read(ctx, atLeast, func(x *view.Index) error {
			read = x.Revision()
			var err error
			p, err = try(x)
			return err
		})
		var se *store.StaleError
		if err == nil && !dryRun && len(p.ops) > 0 {
			var rev int64
			rev, err = a.store.ApplyGuarded(ctx, p.ops, who, store.Guard{Read: read, Names: p.guards, Bundle: p.bundle})
			if err == nil {
				a.written.note(append(names, p.guards...), names == nil, rev, read)
				p.finish(rev)
				return nil
			}
		} else if err == nil {
			// Nothing to write (unchanged, or a dry run): answer only if the
			// store answers a linearizable read, as a write would need.
			if _, err := a.store.Revision(ctx); err != nil {
				return fmt.Errorf("read the store: %w", err)
			}
			p.finish(read)
			return nil
		}
		if !errors.As(err, &se) {
			return err
		}
		if attempt == maxAttempts {
			return fmt.Errorf("%w (%d attempts)", ErrBusy, attempt)
		}
		atLeast = max(atLeast, se.Revision)
	}
}

// written remembers the revisions this applier wrote, per key and guard.
type written struct {
	mu     sync.Mutex
	byName map[string]int64
	// last is the newest revision written, bundle the newest of a bundle.
	last, bundle int64
}

// maxWritten bounds written.byName; past it, what the view already has is
// forgotten.
const maxWritten = 4096

// since returns the revision the view must hold before a write of names
// checks: the newest earlier write of any of them, or of a bundle; for a
// bundle (names nil), the newest write of all.
func (w *written) since(names []string) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if names == nil {
		return w.last
	}
	rev := w.bundle
	for _, n := range names {
		rev = max(rev, w.byName[n])
	}
	return rev
}

// note records a write at rev of names (a bundle when isBundle); seen is a
// revision the view has reached.
func (w *written) note(names []string, isBundle bool, rev, seen int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byName == nil {
		w.byName = map[string]int64{}
	}
	w.last = max(w.last, rev)
	if isBundle {
		w.bundle = max(w.bundle, rev)
	}
	for _, n := range names {
		w.byName[n] = max(w.byName[n], rev)
	}
	if len(w.byName) > maxWritten {
		for n, r := range w.byName {
			if r <= seen {
				delete(w.byName, n)
			}
		}
	}
}

// checkExpect judges a client's expected revision against the view: nil when
// it is the stored one; a *store.ConflictError when it cannot be; a
// *store.StaleError when the view may lag behind it (the store has it).
func (a *Applier) checkExpect(ctx context.Context, x *view.Index, kind, name string, expect, stored int64) error {
	switch {
	case expect <= 0 || expect == stored:
		return nil
	case expect < stored:
		return &store.ConflictError{Kind: kind, Name: name, Expected: expect, Actual: stored}
	}
	// The client may know a newer revision than the view has seen yet.
	var actual int64
	if r, err := a.store.Get(ctx, kind, name); err == nil {
		actual = r.GetMeta().Revision
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if actual == expect && actual > x.Revision() {
		return &store.StaleError{Revision: actual}
	}
	return &store.ConflictError{Kind: kind, Name: name, Expected: expect, Actual: actual}
}

// locks serialises, within one replica, the writes whose checks overlap,
// so they queue instead of racing in etcd: a single write holds the locks
// of its key and guards, a bundle holds them all.
type locks struct {
	all   sync.RWMutex
	mu    sync.Mutex
	names map[string]*nameLock
}

type nameLock struct {
	sync.Mutex
	users int
}

// lock takes the locks of names (a bundle: every lock) and returns the
// function that releases them.
func (l *locks) lock(bundle bool, names ...string) func() {
	if bundle {
		l.all.Lock()
		return l.all.Unlock
	}
	l.all.RLock()
	names = append([]string(nil), names...)
	sort.Strings(names)
	var held []string
	for i, n := range names {
		if i > 0 && names[i-1] == n {
			continue
		}
		l.mu.Lock()
		if l.names == nil {
			l.names = map[string]*nameLock{}
		}
		nl := l.names[n]
		if nl == nil {
			nl = &nameLock{}
			l.names[n] = nl
		}
		nl.users++
		l.mu.Unlock()
		nl.Lock()
		held = append(held, n)
	}
	return func() {
		for _, n := range held {
			l.mu.Lock()
			nl := l.names[n]
			nl.users--
			if nl.users == 0 {
				delete(l.names, n)
			}
			l.mu.Unlock()
			nl.Unlock()
		}
		l.all.RUnlock()
	}
}
