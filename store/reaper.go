package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/bulwarkmesh/bulwark/policies"
)

// reaper ends experiments at their status.endsAt. The lease alone is not
// enough: etcd renews every lease to its full TTL when a leader is elected
// (for example when the embedded etcd restarts), which would let an
// experiment run past the end it promised. A watch feeds the reaper what it
// sees; ending is a compare-and-delete on the mod revision it saw, so several
// replicas reaping the same experiment is harmless.
type reaper struct {
	s    *Store
	mu   sync.Mutex
	runs map[string]reapable // by experiment name
	kick chan struct{}
}

type reapable struct {
	ends time.Time
	rev  int64
}

func newReaper(s *Store) *reaper {
	return &reaper{s: s, runs: map[string]reapable{}, kick: make(chan struct{}, 1)}
}

// observe records the experiments of a watch event.
func (r *reaper) observe(ev Event) {
	r.mu.Lock()
	if ev.Resync != nil {
		r.runs = map[string]reapable{}
		for _, e := range ev.Resync.Experiments {
			r.track(e)
		}
	}
	for _, c := range ev.Changes {
		if c.Kind != policies.KindExperiment {
			continue
		}
		delete(r.runs, c.Name)
		if e, ok := c.Resource.(*policies.ChaosExperiment); ok {
			r.track(e)
		}
	}
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *reaper) track(e *policies.ChaosExperiment) {
	if e.Status == nil {
		return // not started by Bulwark: its lease, if any, is all there is
	}
	ends, err := time.Parse(time.RFC3339Nano, e.Status.EndsAt)
	if err != nil {
		return
	}
	r.runs[e.Metadata.Name] = reapable{ends: ends, rev: e.Metadata.Revision}
}

// run ends experiments when their time comes, until ctx ends.
func (r *reaper) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.mu.Lock()
		now := r.s.now()
		var due map[string]int64
		next := now.Add(time.Hour)
		for name, run := range r.runs {
			if !now.Before(run.ends) {
				if due == nil {
					due = map[string]int64{}
				}
				due[name] = run.rev
				delete(r.runs, name)
			} else if run.ends.Before(next) {
				next = run.ends
			}
		}
		r.mu.Unlock()
		for name, rev := range due {
			if !r.expire(ctx, name, rev) {
				r.mu.Lock()
				if _, seen := r.runs[name]; !seen { // try again soon unless it changed
					r.runs[name] = reapable{ends: r.s.now().Add(time.Second), rev: rev}
				}
				r.mu.Unlock()
			}
		}
		timer.Reset(next.Sub(now))
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
	}
}

// expire deletes an experiment whose end passed, if it is still the run seen
// at rev; its history record reads "expired". It reports false when it
// should be tried again.
func (r *reaper) expire(ctx context.Context, name string, rev int64) bool {
	_, err := r.s.apply(ctx, []Op{{DeleteKind: policies.KindExperiment, DeleteName: name, ExpectRev: rev}}, "", true)
	switch {
	case err == nil:
		r.s.log.Info("experiment ended at its endsAt", "experiment", name)
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrConflict), ctx.Err() != nil:
		// Ended, replaced or stopped meanwhile, or shutting down.
	default:
		r.s.log.Warn("could not end an experiment; trying again", "experiment", name, "error", err)
		return false
	}
	return true
}
