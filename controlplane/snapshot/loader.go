package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// Loader keeps a validated copy of the store's content, following its watch,
// and hands it to the Builder after a quiet period (debounce) or, under a
// steady stream of changes, after a maximum delay.
type Loader struct {
	log      *slog.Logger
	store    *store.Store
	builder  *Builder
	validate policies.ValidateOptions
	debounce time.Duration
	maxDelay time.Duration

	set      *policies.Set
	revision int64
	// invalid holds the resources left out because they do not validate;
	// a resource whose update is invalid keeps its last valid version.
	invalid map[string]api.BuildProblem
	// adopting counts the experiments being adopted; Run waits for them.
	adopting sync.WaitGroup
}

// LoaderConfig is what a Loader needs.
type LoaderConfig struct {
	Log     *slog.Logger
	Store   *store.Store
	Builder *Builder
	// Validate are the limits every stored resource is checked against.
	Validate policies.ValidateOptions
	// Debounce is the quiet period after a change before a rebuild;
	// MaxDelay bounds how long a stream of changes may hold one back.
	Debounce, MaxDelay time.Duration
}

// NewLoader returns a loader; Run starts it.
func NewLoader(c LoaderConfig) *Loader {
	return &Loader{log: c.Log, store: c.Store, builder: c.Builder, validate: c.Validate, debounce: c.Debounce, maxDelay: c.MaxDelay}
}

func resourceKey(kind, name string) string { return kind + "/" + name }

// Run loads the store, builds, then follows the watch until ctx ends.
func (l *Loader) Run(ctx context.Context) error {
	set, rev, err := l.load(ctx)
	if err != nil {
		return err
	}
	l.set, l.revision = set, rev
	l.builder.update(ctx, l.set.Clone(), rev, time.Now(), l.problems())

	events := l.store.Watch(ctx, rev)
	defer func() {
		// Wait for the watch's goroutines (the channel closes when they
		// end) and for the experiments being adopted.
		for range events {
		}
		l.adopting.Wait()
	}()
	var (
		quiet        = time.NewTimer(time.Hour)
		pendingSince time.Time
		observed     time.Time
	)
	quiet.Stop()
	fire := func() {
		quiet.Stop()
		pendingSince = time.Time{}
		l.builder.update(ctx, l.set.Clone(), l.revision, observed, l.problems())
		observed = time.Time{}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			if !l.apply(ctx, ev) {
				continue
			}
			now := time.Now()
			if pendingSince.IsZero() {
				pendingSince, observed = now, now
			}
			if now.Sub(pendingSince) >= l.maxDelay {
				fire()
				continue
			}
			quiet.Reset(l.debounce)
		case <-quiet.C:
			fire()
		}
	}
}

// load reads the whole store, retrying until it answers or ctx ends.
func (l *Loader) load(ctx context.Context) (*policies.Set, int64, error) {
	backoff := 100 * time.Millisecond
	for {
		// The content revision, not the store's: every replica gives the
		// same content the same revision (status writes move the store's).
		set, rev, _, problems, err := l.store.LoadContent(ctx)
		if err == nil {
			l.invalid = map[string]api.BuildProblem{}
			for i, p := range problems {
				l.invalid[problemKey(p, i)] = api.BuildProblem{Message: p.Error()}
				l.log.Warn("stored value skipped", "err", p)
			}
			clean := policies.NewSet()
			for _, r := range set.Resources() {
				if l.check(r) {
					clean.Add(r)
					l.adopt(ctx, r)
				}
			}
			clean.Registered = set.Registered
			return clean, rev, nil
		}
		l.log.Warn("store not reachable; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// check validates a resource and records why it is left out.
func (l *Loader) check(r policies.Resource) bool {
	key := resourceKey(r.GetKind(), r.GetMeta().Name)
	if vs := policies.Validate(r, l.validate); len(vs) > 0 {
		l.invalid[key] = api.BuildProblem{Message: fmt.Sprintf("%s %s left out (its last valid version, if any, stays in force): %s", r.GetKind(), r.GetMeta().Name, vs.Error())}
		l.log.Warn("invalid resource in the store", "kind", r.GetKind(), "name", r.GetMeta().Name, "violations", vs.Error())
		return false
	}
	delete(l.invalid, key)
	return true
}

// problemKey files a stored value that was skipped under its etcd key, so
// a later change of that key (a valid value, a deletion) clears it.
func problemKey(p error, i int) string {
	var ve *store.ValueError
	if errors.As(p, &ve) {
		return "value/" + ve.Key
	}
	return fmt.Sprintf("decode/%d", i)
}

// apply folds a watch event into the set; it reports whether anything
// changed, the problems included: a bad value written straight into etcd
// shows in status at once, not at the next unrelated write.
func (l *Loader) apply(ctx context.Context, ev store.Event) bool {
	before := len(l.invalid)
	for _, c := range ev.Changes {
		if _, ok := l.invalid["value/"+c.Key]; ok {
			delete(l.invalid, "value/"+c.Key)
			before = -1
		}
	}
	for i, p := range ev.Problems {
		l.invalid[problemKey(p, i)] = api.BuildProblem{Message: p.Error()}
		l.log.Warn("stored value skipped", "err", p)
	}
	problemsMoved := len(ev.Problems) > 0 || before != len(l.invalid)
	if ev.Resync != nil {
		l.invalid = map[string]api.BuildProblem{}
		for i, p := range ev.Problems {
			l.invalid[problemKey(p, i)] = api.BuildProblem{Message: p.Error()}
		}
		clean := policies.NewSet()
		for _, r := range ev.Resync.Resources() {
			if l.check(r) {
				clean.Add(r)
			}
		}
		clean.Registered = ev.Resync.Registered
		l.set, l.revision = clean, ev.Revision
		return true
	}
	changed := false
	for _, c := range ev.Changes {
		switch {
		case c.Kind == store.KindEndpoint && c.Endpoint != nil:
			l.set.Register(c.Service, c.Instance, *c.Endpoint)
		case c.Kind == store.KindEndpoint:
			l.set.Deregister(c.Service, c.Instance)
		case c.Resource == nil:
			l.set.Remove(c.Kind, c.Name)
			delete(l.invalid, resourceKey(c.Kind, c.Name))
		default:
			if !l.check(c.Resource) {
				problemsMoved = true
				continue
			}
			l.set.Add(c.Resource)
			l.adopt(ctx, c.Resource)
		}
		changed = true
	}
	if ev.Revision > l.revision {
		l.revision = ev.Revision
	}
	return changed || problemsMoved
}

// adopt starts an experiment that was written straight into etcd, without
// the lease and status a start through the API gives it: re-written with a
// compare-and-swap, it gets a lease for its duration and a history record, so
// it ends by itself. Of several replicas, one wins; the others see a conflict.
func (l *Loader) adopt(ctx context.Context, r policies.Resource) {
	e, ok := r.(*policies.ChaosExperiment)
	if !ok || e.Status != nil {
		return
	}
	run := *e
	l.adopting.Add(1)
	go func() {
		defer l.adopting.Done()
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := l.store.Put(actx, &run, e.Metadata.Revision); err != nil && !errors.Is(err, store.ErrConflict) {
			l.log.Warn("could not lease an experiment written without one", "experiment", e.Metadata.Name, "err", err)
		}
	}()
}

// problems lists the invalid resources, sorted.
func (l *Loader) problems() []api.BuildProblem {
	out := make([]api.BuildProblem, 0, len(l.invalid))
	for _, p := range l.invalid {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Message < out[j].Message })
	return out
}
