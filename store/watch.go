package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bulwarkmesh/bulwark/policies"
)

// Event is what a watch delivers: the changes of one or more transactions up
// to Revision, or, after the watch lost its place (a compaction, or a watch
// started from revision 0), the whole state in Resync.
type Event struct {
	// Revision is the store revision the consumer has seen once it applied this event.
	Revision int64
	// Changes in store order; empty when Resync is set.
	Changes []Change
	// Resync, when set, replaces everything the consumer knew.
	Resync *policies.Set
	// Problems are stored values that failed to decode (each a *ValueError);
	// they were skipped.
	Problems []error
}

// Change is one put or delete of a resource or registered endpoint.
type Change struct {
	// Kind is policies.KindService, KindPolicy, KindExperiment or KindEndpoint.
	Kind string
	// Name is the resource's name; for endpoints "<service>/<instance>".
	Name string
	// Service and Instance are set for endpoints.
	Service, Instance string
	// Key is the etcd key that changed.
	Key string
	// Resource is the new value of a resource, with metadata.revision set; nil on delete.
	Resource policies.Resource
	// Endpoint is the new value of an endpoint; nil on delete.
	Endpoint *policies.Endpoint
}

// Deleted reports whether the change removes its resource or endpoint.
func (c Change) Deleted() bool { return c.Resource == nil && c.Endpoint == nil }

// Watch delivers every change after fromRev (fromRev <= 0: a Resync with
// the current state first). When the revision it needs was compacted it
// re-lists and sends a Resync, then goes on from there. It keeps going
// through etcd outages (reconnecting with backoff; WithRequireLeader makes a
// member cut off from its cluster end the watch so another is tried). The
// channel closes when ctx ends or the Store is closed.
//
// While it runs, a watch also ends the experiments it sees when their
// status.endsAt passes (a compare-and-delete that marks the history record
// "expired"), because etcd renews leases to their full TTL when a leader is
// elected and the lease alone could outlast the promised end.
func (s *Store) Watch(ctx context.Context, fromRev int64) <-chan Event {
	out := make(chan Event, 16)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	rp := newReaper(s)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rp.run(ctx)
	}()
	go func() {
		defer close(out)
		defer wg.Wait()
		defer cancel()
		defer stop()
		s.watchLoop(ctx, fromRev, out, rp)
	}()
	return out
}

const (
	watchMinBackoff = 100 * time.Millisecond
	watchMaxBackoff = 5 * time.Second
)

func (s *Store) watchLoop(ctx context.Context, rev int64, out chan<- Event, rp *reaper) {
	backoff := watchMinBackoff
	wait := func() bool {
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(backoff*2, watchMaxBackoff)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	needResync := rev <= 0
	// resume is the store revision of the last re-list: where the watch
	// resumes when the history after the content revision was compacted
	// (the deletions in between are then lost to the content revision).
	var resume int64
	for ctx.Err() == nil {
		if needResync {
			set, r, read, problems, err := s.LoadContent(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("watch: re-listing failed; retrying", "error", err, "backoff", backoff)
				}
				if !wait() {
					return
				}
				continue
			}
			ev := Event{Revision: r, Resync: set, Problems: problems}
			rp.observe(ev)
			if !send(ctx, out, ev) {
				return
			}
			rev, resume, needResync, backoff = r, read, false, watchMinBackoff
		}
		var err error
		var progressed bool
		rev, needResync, progressed, err = s.watchFrom(ctx, rev, out, rp)
		if ctx.Err() != nil {
			return
		}
		if progressed {
			backoff = watchMinBackoff
		}
		if needResync && resume > rev {
			// The deletions since the newest key were compacted: go on
			// from the revision the re-list read.
			rev, resume, needResync = resume, 0, false
			continue
		}
		if needResync {
			s.log.Info("watch: revision compacted; re-listing", "after", rev)
			continue
		}
		s.log.Warn("watch interrupted; resuming", "after", rev, "error", err, "backoff", backoff)
		if !wait() {
			return
		}
	}
}

// watchFrom watches the resource and endpoint keys after rev until the watch
// ends; it returns the last revision delivered and whether a re-list is needed.
func (s *Store) watchFrom(ctx context.Context, rev int64, out chan<- Event, rp *reaper) (last int64, resync, progressed bool, err error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// The range [endpoints/, status/) holds every key a watch needs (and the
	// history, ignored) but not the busy proxy status.
	wch := s.cli.Watch(wctx, s.dir(dirEndpoints),
		clientv3.WithRange(s.dir(dirStatus)), clientv3.WithRev(rev+1))
	for resp := range wch {
		if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
			return rev, true, progressed, nil
		}
		if err := resp.Err(); err != nil {
			return rev, false, progressed, err
		}
		progressed = true
		if len(resp.Events) == 0 {
			continue // created, or a progress notification
		}
		ev := s.toEvent(resp.Events)
		rev = ev.Revision
		if len(ev.Changes) == 0 && len(ev.Problems) == 0 && !s.touchesGuards(resp.Events) {
			continue // only history records changed
		}
		rp.observe(ev)
		if !send(ctx, out, ev) {
			return rev, false, progressed, ctx.Err()
		}
	}
	return rev, false, progressed, errors.New("watch channel closed")
}

// toEvent turns etcd events into changes. The revision is that of the
// content: the last event's among those of resource and endpoint keys (a
// watch response's header may run ahead of the events it carries, and one
// response may also carry history records written after the content, which
// must not raise the content revision: every replica gives the same content
// the same revision). A response of history records alone has the last
// event's revision and no changes.
func (s *Store) toEvent(evs []*clientv3.Event) Event {
	ev := Event{Revision: evs[len(evs)-1].Kv.ModRevision}
	content := int64(0)
	for _, e := range evs {
		key := string(e.Kv.Key)
		if strings.HasPrefix(key, s.dir(dirGuards)) {
			// A guarded write's revision, even one that changed no resource.
			content = max(content, e.Kv.ModRevision)
		}
		ref, ok := s.parseKey(key)
		if !ok {
			if s.inResourceDir(key) && e.Type == mvccpb.PUT {
				ev.Problems = append(ev.Problems, &ValueError{Key: key, Err: errors.New("malformed key")})
				content = max(content, e.Kv.ModRevision)
			}
			continue
		}
		content = max(content, e.Kv.ModRevision)
		c := Change{Kind: ref.kind, Name: ref.name, Service: ref.service, Instance: ref.instance, Key: key}
		if e.Type == mvccpb.PUT {
			if ref.kind == KindEndpoint {
				ep, err := decodeEndpoint(key, ref, e.Kv.Value)
				if err != nil {
					ev.Problems = append(ev.Problems, err)
					continue
				}
				c.Endpoint = &ep
			} else {
				r, err := s.decodeResource(e.Kv.Key, e.Kv.Value, e.Kv.ModRevision)
				if err != nil {
					ev.Problems = append(ev.Problems, err)
					continue
				}
				c.Resource = r
			}
		}
		ev.Changes = append(ev.Changes, c)
	}
	for _, p := range ev.Problems {
		s.log.Warn("watch: skipping a stored value; consumers keep the last good one", "error", p)
	}
	if content > 0 {
		ev.Revision = content
	}
	return ev
}

// touchesGuards reports whether evs change a guard key. A guarded write
// whose resource changes were no-ops (a deletion of what was already gone)
// touches only guards; its event, without changes, still tells consumers
// that they have seen its revision.
func (s *Store) touchesGuards(evs []*clientv3.Event) bool {
	for _, e := range evs {
		if strings.HasPrefix(string(e.Kv.Key), s.dir(dirGuards)) {
			return true
		}
	}
	return false
}

func send(ctx context.Context, out chan<- Event, ev Event) bool {
	select {
	case out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}
