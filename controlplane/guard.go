package controlplane

import (
	"context"
	"sync"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// guardedCache wraps the snapshot cache so that a version a proxy rejected is
// never sent to that proxy again. Left alone, the snapshot cache answers a
// NACK (whose version_info is the last accepted version) with the current
// version at once, in a loop, thousands of times a second. Here a watch from a
// proxy that rejected the group's current version is parked until the group
// gets a different version; then it is handed to the cache, which answers it.
// A watch whose group has no snapshot yet is parked until the first one (see
// CreateWatch).
type guardedCache struct {
	cachev3.SnapshotCache

	// pub is held for writing while a round of snapshots is published
	// (pause), and for reading by every watch creation: the cache takes one
	// global lock to create a watch and to set a snapshot, so without it
	// the builder would queue behind the ACKs of the groups it just
	// published before it could publish the next.
	pub sync.RWMutex

	mu sync.Mutex
	// rejected: node ID → type URL → the version that node rejected.
	rejected map[string]map[string]string
	// parked: group → watches held back from the cache.
	parked map[string]map[*parkedWatch]struct{}
}

type parkedWatch struct {
	req    *cachev3.Request
	sub    cachev3.Subscription
	ch     chan cachev3.Response
	cancel func() // set once the watch is handed to the cache
	done   bool   // cancelled by the server, or handed over
}

func newGuardedCache() *guardedCache {
	return &guardedCache{
		SnapshotCache: cachev3.NewSnapshotCache(false, nodeHash{}, nil),
		rejected:      map[string]map[string]string{},
		parked:        map[string]map[*parkedWatch]struct{}{},
	}
}

// Reject records that a node rejected a version of a type.
func (g *guardedCache) Reject(nodeID, typeURL, version string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.rejected[nodeID]
	if m == nil {
		m = map[string]string{}
		g.rejected[nodeID] = m
	}
	m[typeURL] = version
}

// Forget drops what a node rejected, once it is gone for good.
func (g *guardedCache) Forget(nodeID string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.rejected, nodeID)
}

// CreateWatch parks a watch whose answer would be a version the node
// rejected, and a watch whose group has no snapshot yet.
//
// The second matters after a restart: a proxy resumes with the version it
// last ACKed, often the very version the first build produces. The cache
// answers a new watch when the stream was never sent the resources, but when
// the snapshot arrives after the watch it answers only a different version,
// so such a stream would get nothing and its proxy would never ACK (and
// never show as converged). Handed to the cache once the snapshot exists,
// the watch is answered like any new stream's.
func (g *guardedCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	g.pub.RLock()
	defer g.pub.RUnlock()
	group := nodeHash{}.ID(req.GetNode())
	g.mu.Lock()
	bad, isBad := g.rejected[req.GetNode().GetId()][req.GetTypeUrl()]
	snap, err := g.SnapshotCache.GetSnapshot(group)
	if err == nil && (!isBad || bad != snap.GetVersion(req.GetTypeUrl())) {
		g.mu.Unlock()
		return g.SnapshotCache.CreateWatch(req, sub, ch)
	}
	pw := &parkedWatch{req: req, sub: sub, ch: ch}
	if g.parked[group] == nil {
		g.parked[group] = map[*parkedWatch]struct{}{}
	}
	g.parked[group][pw] = struct{}{}
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		pw.done = true
		delete(g.parked[group], pw)
		cancel := pw.cancel
		g.mu.Unlock()
		if cancel != nil {
			cancel()
		}
	}, nil
}

// CreateDeltaWatch waits while a round of snapshots is being published.
func (g *guardedCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	g.pub.RLock()
	defer g.pub.RUnlock()
	return g.SnapshotCache.CreateDeltaWatch(req, sub, ch)
}

// pause holds back new watches until the returned func is called, so that
// a round of SetSnapshot calls runs without contention. The responses the
// cache sends meanwhile go to buffered channels (one per type and stream).
func (g *guardedCache) pause() (resume func()) {
	g.pub.Lock()
	return g.pub.Unlock
}

// SetSnapshot publishes a group's snapshot and hands over the parked watches
// that the new version releases.
func (g *guardedCache) SetSnapshot(ctx context.Context, group string, snap cachev3.ResourceSnapshot) error {
	if err := g.SnapshotCache.SetSnapshot(ctx, group, snap); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for pw := range g.parked[group] {
		t := pw.req.GetTypeUrl()
		if g.rejected[pw.req.GetNode().GetId()][t] == snap.GetVersion(t) {
			continue // still the rejected version
		}
		delete(g.parked[group], pw)
		if pw.done {
			continue
		}
		cancel, err := g.SnapshotCache.CreateWatch(pw.req, pw.sub, pw.ch)
		if err == nil {
			pw.cancel = cancel
		}
	}
	if len(g.parked[group]) == 0 {
		delete(g.parked, group)
	}
	return nil
}

// parkedCount returns how many watches are held back, for tests and metrics.
func (g *guardedCache) parkedCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, m := range g.parked {
		n += len(m)
	}
	return n
}
