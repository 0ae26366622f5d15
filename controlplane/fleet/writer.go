package fleet

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/store"
)

// statusWritesPerSecond bounds how many proxies' status a replica writes
// per second. Every build changes the status of every proxy of its groups
// (the revision they run); under a steady stream of changes, writing them
// all at every flush would pour megabytes per second into etcd, whose
// history is kept until compaction. Beyond the bound, proxies are written
// in later flushes: with 10,000 proxies, each one's stored status may lag
// by about ten seconds. This replica's own answers (/v1/proxies,
// /v1/status) come from memory and do not lag.
const statusWritesPerSecond = 1000

// statusRewriteEvery is the least time between two writes of one proxy's
// status. Each write is a revision etcd keeps (in memory too) until
// compaction; rewriting a proxy at every build would grow that history with
// the rate of changes. The first write of a proxy is not held back; a
// proxy's later changes, and its removal, reach the store within this time.
const statusRewriteEvery = 10 * time.Second

// Writer persists this replica's proxy status to the store, coalescing
// changes: each proxy is written at most once per statusRewriteEvery, and at
// most statusWritesPerSecond proxies per second.
type Writer struct {
	store   *store.Store
	replica string
	tracker *xdsserver.Tracker
	log     *slog.Logger

	mu    sync.Mutex
	dirty map[string]bool
	// limit is how many proxies one flush writes; 0 is no limit.
	limit int
	// every is the least time between two writes of a proxy; written has
	// when each proxy was last written.
	every   time.Duration
	written map[string]time.Time
}

// Mark records that a proxy's status changed and must be written again.
func (w *Writer) Mark(nodeID string) {
	w.mu.Lock()
	w.dirty[nodeID] = true
	w.mu.Unlock()
}

// Run flushes every interval until ctx ends.
func (w *Writer) Run(ctx context.Context, interval time.Duration) {
	w.mu.Lock()
	w.limit = max(1, int(statusWritesPerSecond*interval.Seconds()))
	w.every = statusRewriteEvery
	w.mu.Unlock()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.flush(ctx)
		}
	}
}

func (w *Writer) flush(ctx context.Context) {
	now := time.Now()
	w.mu.Lock()
	if w.written == nil {
		w.written = map[string]time.Time{}
	}
	batch := make(map[string]bool, min(len(w.dirty), max(w.limit, 1)))
	for id := range w.dirty {
		if w.limit > 0 && len(batch) == w.limit {
			break
		}
		if last, ok := w.written[id]; ok && now.Sub(last) < w.every {
			continue // written recently: it waits for a later flush
		}
		batch[id] = true
		delete(w.dirty, id)
	}
	w.mu.Unlock()
	var failed []string
	puts := make(map[string][]byte, len(batch))
	for id := range batch {
		if p, ok := w.tracker.Proxy(id); ok {
			puts[id], _ = json.Marshal(p)
		} else if err := w.store.DeleteStatus(ctx, w.replica, id); err != nil {
			if ctx.Err() != nil {
				return
			}
			failed = append(failed, id)
		}
	}
	// One transaction per batch of proxies: a change that reaches 10,000
	// proxies is a handful of commits, not 10,000.
	if err := w.store.PutStatuses(ctx, w.replica, puts); err != nil {
		if ctx.Err() != nil {
			return
		}
		for id := range puts {
			failed = append(failed, id)
		}
	}
	w.mu.Lock()
	for id := range batch {
		if _, put := puts[id]; put {
			w.written[id] = now
		} else {
			delete(w.written, id)
		}
	}
	for _, id := range failed {
		w.dirty[id] = true
		delete(w.written, id)
	}
	w.mu.Unlock()
	if len(failed) > 0 {
		w.log.Debug("proxy status not persisted; will retry", "proxies", len(failed))
	}
}

// NewWriter returns a writer of replica's proxies, as tr knows them.
func NewWriter(st *store.Store, replica string, tr *xdsserver.Tracker, log *slog.Logger) *Writer {
	return &Writer{store: st, replica: replica, tracker: tr, log: log, dirty: map[string]bool{}}
}
