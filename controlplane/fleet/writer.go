package fleet

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/store"
)

// FlushEvery is how often a replica writes the proxy status that changed.
// A change of state (a connect or disconnect, an ACK of a new version, a
// NACK, a new build that leaves the proxy pending) is written at the next
// flush, so the other replicas, which follow the status through a watch,
// see it within about FlushEvery plus a watch round trip; changes that
// come together share one flush, a few proxies per transaction.
const FlushEvery = 100 * time.Millisecond

// statusWritesPerSecond bounds how many proxies' status a replica writes
// per second. Every build changes the status of every proxy of its groups
// (pending, then the revision they ACKed): under a steady stream of
// changes to a large fleet, writing them all at every flush would pour
// megabytes per second into etcd, whose history is kept until compaction.
// Beyond the bound, proxies are written in later flushes (a change reaching
// 10,000 proxies lags by up to five seconds on the other replicas; this
// replica's own answers come from memory and do not lag).
const statusWritesPerSecond = 2000

// statusRewriteEvery is the least time between two writes of a proxy whose
// state did not change, only its timestamps (a proxy ACKs the same version
// again when it reconnects or re-requests). Each write is a revision etcd
// keeps (in memory too) until compaction: a change of state is written at
// once, a repeat of the same state at most this often.
const statusRewriteEvery = 10 * time.Second

// Writer persists this replica's proxy status to the store: each change of
// a proxy's state at the next flush, an unchanged state at most once per
// statusRewriteEvery, and at most statusWritesPerSecond proxies per second.
// It also shares what this replica's proxies rejected (see
// xdsserver.Rejection).
type Writer struct {
	store   *store.Store
	replica string
	tracker *xdsserver.Tracker
	log     *slog.Logger

	mu sync.Mutex
	// dirty: proxies marked since the last flush, to look at again.
	dirty map[string]bool
	// held: proxies whose state did not change since their last write,
	// with when they may be written again.
	held map[string]time.Time
	// limit is how many proxies one flush writes; 0 is no limit.
	limit int
	// every is the least time between two writes of one unchanged state.
	every time.Duration
	// written: what was last written of each proxy.
	written map[string]writtenState
	// rejected: node → type URL of the rejections to share.
	rejected map[string]map[string]bool
}

type writtenState struct {
	at    time.Time
	state string
}

// NewWriter returns a writer of replica's proxies, as tr knows them.
func NewWriter(st *store.Store, replica string, tr *xdsserver.Tracker, log *slog.Logger) *Writer {
	return &Writer{store: st, replica: replica, tracker: tr, log: log, dirty: map[string]bool{},
		held: map[string]time.Time{}, every: statusRewriteEvery, written: map[string]writtenState{},
		rejected: map[string]map[string]bool{}}
}

// Mark records that a proxy's status changed and must be looked at again.
func (w *Writer) Mark(nodeID string) {
	w.mu.Lock()
	w.dirty[nodeID] = true
	w.mu.Unlock()
}

// MarkAll marks every proxy of this replica (its status lease ended: what
// it wrote is gone and must be written again).
func (w *Writer) MarkAll() {
	ps := w.tracker.Proxies()
	w.mu.Lock()
	for _, p := range ps {
		w.dirty[p.ID] = true
		delete(w.written, p.ID)
		delete(w.held, p.ID)
	}
	w.mu.Unlock()
}

// MarkRejected records that this replica's guard recorded a rejection of a
// type by a node, to share at the next flush.
func (w *Writer) MarkRejected(nodeID, typeURL string) {
	w.mu.Lock()
	if w.rejected[nodeID] == nil {
		w.rejected[nodeID] = map[string]bool{}
	}
	w.rejected[nodeID][typeURL] = true
	w.mu.Unlock()
}

// Run flushes every interval until ctx ends.
func (w *Writer) Run(ctx context.Context, interval time.Duration) {
	w.mu.Lock()
	w.limit = max(1, int(statusWritesPerSecond*interval.Seconds()))
	w.mu.Unlock()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.flushRejections(ctx)
			w.flush(ctx)
		}
	}
}

// stateOf is a proxy's status without the timestamps that move when
// nothing changed.
func stateOf(p api.ProxyStatus) string {
	c := p
	c.Types = make(map[string]*api.TypeStatus, len(p.Types))
	for k, ts := range p.Types {
		t := *ts
		t.AckedAt = time.Time{}
		c.Types[k] = &t
	}
	b, _ := json.Marshal(c)
	return string(b)
}

func (w *Writer) flush(ctx context.Context) {
	now := time.Now()
	w.mu.Lock()
	look := make([]string, 0, len(w.dirty))
	for id := range w.dirty {
		look = append(look, id)
	}
	clear(w.dirty)
	for id, due := range w.held {
		if !now.Before(due) {
			look = append(look, id)
			delete(w.held, id)
		}
	}
	limit := w.limit
	w.mu.Unlock()

	type put struct {
		value []byte
		state string
	}
	// Changes of state first, then the repeats that are due.
	var changed, repeats []string
	puts := map[string]put{}
	var gone []string
	for _, id := range look {
		p, ok := w.tracker.Proxy(id)
		w.mu.Lock()
		last, wasWritten := w.written[id]
		w.mu.Unlock()
		if !ok {
			if wasWritten {
				gone = append(gone, id)
			}
			continue
		}
		st := stateOf(p)
		switch {
		case !wasWritten || st != last.state:
			changed = append(changed, id)
		case now.Sub(last.at) >= w.every:
			repeats = append(repeats, id)
		default:
			w.mu.Lock()
			if !w.dirty[id] {
				w.held[id] = last.at.Add(w.every)
			}
			w.mu.Unlock()
			continue
		}
		v, _ := json.Marshal(p)
		puts[id] = put{value: v, state: st}
	}
	batch := map[string][]byte{}
	var later []string
	for _, id := range append(changed, repeats...) {
		if limit > 0 && len(batch)+len(gone) >= limit {
			later = append(later, id)
			continue
		}
		batch[id] = puts[id].value
	}
	var failed []string
	for _, id := range gone {
		if err := w.store.DeleteStatus(ctx, w.replica, id); err != nil {
			if ctx.Err() != nil {
				return
			}
			failed = append(failed, id)
		}
	}
	// One transaction per few proxies: a change that reaches 10,000
	// proxies is a few hundred commits, not 10,000.
	putErr := w.store.PutStatuses(ctx, w.replica, batch)
	if putErr != nil && ctx.Err() != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range gone {
		delete(w.written, id)
	}
	if putErr == nil {
		for id := range batch {
			w.written[id] = writtenState{at: now, state: puts[id].state}
		}
	} else {
		for id := range batch {
			failed = append(failed, id)
		}
	}
	for _, id := range later {
		w.dirty[id] = true
	}
	for _, id := range failed {
		w.dirty[id] = true
		delete(w.written, id)
	}
	if len(failed) > 0 {
		w.log.Debug("proxy status not persisted; will retry", "proxies", len(failed))
	}
}

// flushRejections shares the rejections recorded since the last flush.
func (w *Writer) flushRejections(ctx context.Context) {
	w.mu.Lock()
	pending := w.rejected
	w.rejected = map[string]map[string]bool{}
	w.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	recs := map[string]map[string][]byte{}
	for node, types := range pending {
		for typ := range types {
			rj, ok := w.tracker.Rejection(node, typ)
			if !ok {
				continue
			}
			if recs[node] == nil {
				recs[node] = map[string][]byte{}
			}
			recs[node][typ], _ = json.Marshal(rj)
		}
	}
	if err := w.store.PutRejections(ctx, w.replica, recs); err != nil && ctx.Err() == nil {
		w.log.Debug("rejections not shared; will retry", "err", err)
		w.mu.Lock()
		for node, types := range pending {
			for typ := range types {
				if w.rejected[node] == nil {
					w.rejected[node] = map[string]bool{}
				}
				w.rejected[node][typ] = true
			}
		}
		w.mu.Unlock()
	}
}
