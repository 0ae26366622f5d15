package xdsserver

import (
	"sync"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// Cache wraps the snapshot cache. It answers state-of-the-world
// watches itself, one shared answer per group, type and version (see
// sotw.go), and it never sends a proxy a version that proxy rejected. Left
// alone, the snapshot cache answers a NACK (whose version_info is the last
// accepted version) with the current version at once, in a loop, thousands
// of times a second. Here a watch from a proxy that rejected the group's
// current version is held until the group gets a different version.
type Cache struct {
	cachev3.SnapshotCache

	// pub is held for writing while a round of snapshots is published
	// (pause), and for reading by every watch creation, so that the builder
	// does not queue behind the ACKs of the groups it just published before
	// it can publish the next.
	pub sync.RWMutex

	mu sync.Mutex
	// rejected: node ID → type URL → the version that node rejected.
	rejected map[string]map[string]string
	// current: group → its snapshot.
	current map[string]cachev3.ResourceSnapshot
	// watches: group → the state-of-the-world watches held.
	watches map[string]map[*sotwWatch]struct{}
	// answers: group → the shared answers of its current versions.
	answers map[string]map[answerKey]*sotwAnswer
}

// NewCache returns a cache whose snapshots are keyed by NodeHash.
func NewCache() *Cache {
	return &Cache{
		SnapshotCache: cachev3.NewSnapshotCache(false, NodeHash{}, nil),
		rejected:      map[string]map[string]string{},
		current:       map[string]cachev3.ResourceSnapshot{},
		watches:       map[string]map[*sotwWatch]struct{}{},
		answers:       map[string]map[answerKey]*sotwAnswer{},
	}
}

// Reject records that a node rejected a version of a type.
func (g *Cache) Reject(nodeID, typeURL, version string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.rejected[nodeID]
	if m == nil {
		m = map[string]string{}
		g.rejected[nodeID] = m
	}
	m[typeURL] = version
}

// CreateDeltaWatch waits while a round of snapshots is being published.
func (g *Cache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	g.pub.RLock()
	defer g.pub.RUnlock()
	return g.SnapshotCache.CreateDeltaWatch(req, sub, ch)
}

// Pause holds back new watches until the returned func is called, so that
// a round of SetSnapshot calls runs without contention. The responses the
// cache sends meanwhile go to buffered channels (one per type and stream).
func (g *Cache) Pause() (resume func()) {
	g.pub.Lock()
	return g.pub.Unlock
}
