// Package view keeps an indexed, in-memory copy of the store's resources,
// fed by the store's watch, so that a write checks only what it touches:
// the resources it changes, the services they apply to, the policies and
// experiments on those services and the services their fallbacks reach
// (Index.Neighbourhood). Every stored resource that decodes is in the view,
// valid or not, as the store holds it; endpoints are not (no write check
// reads them).
//
// It imports the store and policies; it must not import the admin API,
// gitops, the xDS server, the snapshot builder, the fleet or apply.
package view

import (
	"context"
	"log/slog"
	"sync"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// View is the store's resources at one revision, kept up to date by Run.
// It is safe for concurrent use.
type View struct {
	store *store.Store
	log   *slog.Logger

	mu      sync.RWMutex
	idx     *Index
	running bool
	loaded  bool // a first resync arrived
	// moved is closed and replaced whenever the revision moves.
	moved chan struct{}
}

// New returns a view of st; Run fills it.
func New(st *store.Store, log *slog.Logger) *View {
	if log == nil {
		log = slog.Default()
	}
	return &View{store: st, log: log, idx: NewIndex(), moved: make(chan struct{})}
}

// Run follows the store's watch until ctx ends, starting with the whole
// content (a resync).
func (v *View) Run(ctx context.Context) {
	v.mu.Lock()
	v.running = true
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.running, v.loaded = false, false
		close(v.moved)
		v.moved = make(chan struct{})
		v.mu.Unlock()
	}()
	for ev := range v.store.Watch(ctx, 0) {
		v.mu.Lock()
		if ev.Resync != nil {
			v.idx, v.loaded = FromSet(ev.Resync, ev.Revision), true
		} else {
			for _, c := range ev.Changes {
				v.idx.apply(c)
			}
			v.idx.rev = max(v.idx.rev, ev.Revision)
		}
		close(v.moved)
		v.moved = make(chan struct{})
		v.mu.Unlock()
	}
}

// Read runs fn on the index once it holds the store's content and has
// caught up with revision atLeast (a revision of a resource write: the
// watch does not see the others), under the view's read lock: fn must not
// keep the index, nor change what it returns. A view that is not running
// reads the store instead (Load), which costs a full read and an index
// build per call.
func (v *View) Read(ctx context.Context, atLeast int64, fn func(*Index) error) error {
	for {
		v.mu.RLock()
		if !v.running {
			v.mu.RUnlock()
			set, rev, _, err := v.store.Load(ctx)
			if err != nil {
				return err
			}
			return fn(FromSet(set, rev))
		}
		if v.loaded && v.idx.rev >= atLeast {
			defer v.mu.RUnlock()
			return fn(v.idx)
		}
		moved := v.moved
		v.mu.RUnlock()
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Revision returns the store revision the view has seen.
func (v *View) Revision() int64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.idx.rev
}

// Ref names a resource.
type Ref struct{ Kind, Name string }

// RefOf names r.
func RefOf(r policies.Resource) Ref { return Ref{r.GetKind(), r.GetMeta().Name} }
