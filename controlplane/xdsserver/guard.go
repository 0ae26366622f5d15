package xdsserver

import (
	"strings"
	"sync"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Cache wraps the snapshot cache. It answers state-of-the-world watches
// itself, one shared answer per group, type and version (see sotw.go), and
// it never sends a proxy again what that proxy rejected.
//
// Left alone, the snapshot cache answers a NACK (whose version_info is the
// last accepted version) with the current version at once, in a loop,
// thousands of times a second. Here a rejection is remembered per node and
// type with what was rejected: the version and the names the proxy had
// asked for. A later request of that node is held while the group still has
// that version and the request asks for nothing beyond those names. So:
//   - a proxy that rejected a version keeps its last good config until the
//     group has a different version, across reconnects (its new stream
//     carries the version it accepted);
//   - a rejection holds back only what was rejected: a gRPC client that
//     rejected the "payments" route configuration and then asks for
//     "inventory" too is answered (gRPC applies the valid resources of a
//     response and NACKs the rest), and the guard then remembers both names;
//   - a new process with the same node id, which has nothing (its request
//     carries no version) and has not rejected anything on its stream, gets
//     the current version once rather than no config at all.
//
// Records are dropped once the group's version moves on, by the next
// request of the node or by Forget, and there are at most maxRejections.
type Cache struct {
	cachev3.SnapshotCache

	groups *Groups
	hash   NodeHash

	// pub is held for writing while a round of snapshots is published
	// (pause), and for reading by every watch creation, so that the builder
	// does not queue behind the ACKs of the groups it just published before
	// it can publish the next.
	pub sync.RWMutex

	mu sync.Mutex
	// rejected: node ID → type URL → what that node rejected.
	rejected map[string]map[string]*rejection
	nRejects int
	seq      uint64 // orders rejections, oldest first
	// streamOf: the stream each request in flight arrived on (from the
	// tracker, which sees every request just before its watch is created).
	streamOf map[*discoveryv3.DiscoveryRequest]int64
	// current: group → its snapshot.
	current map[string]cachev3.ResourceSnapshot
	// watches: group → the state-of-the-world watches held.
	watches map[string]map[*sotwWatch]struct{}
	// answers: group → the shared answers of its current versions.
	answers map[string]map[answerKey]*sotwAnswer
	// blocked counts answers not sent because the stream's channel was full.
	blocked int
	// owedEDS: the Envoy streams that were sent a CDS response and no EDS
	// response since (see Sent). Under owedMu, not mu: every response sent
	// updates it, and mu is held while a publication answers a group.
	owedMu  sync.Mutex
	owedEDS map[int64]bool
}

// maxRejections bounds the rejections remembered; past it the oldest are
// forgotten first (each record is one node and one type). A variable for
// tests.
var maxRejections = 100000

// maxRejectedNames bounds the names remembered per rejection; a rejection
// of more covers every name (an Envoy's EDS request names every cluster).
const maxRejectedNames = 1000

// maxRejectingStreams bounds the streams remembered per rejection.
const maxRejectingStreams = 8

// rejection is what one node rejected of one type.
type rejection struct {
	group   string
	version string
	// all: the node had asked for every resource in one of its rejections;
	// names lists what it had asked for by name in the others.
	all   bool
	names map[string]bool
	// streams that sent the NACK; a request with no version is held only on
	// those (a new process has nothing to keep).
	streams map[int64]bool
	seq     uint64
	// detail is the proxy's error, at when it rejected (for status).
	detail string
	at     time.Time
}

// NewCache returns a cache whose snapshots are keyed by NodeHash.
func NewCache() *Cache {
	groups := &Groups{}
	hash := NodeHash{groups: groups}
	return &Cache{
		SnapshotCache: cachev3.NewSnapshotCache(false, hash, nil),
		groups:        groups,
		hash:          hash,
		rejected:      map[string]map[string]*rejection{},
		streamOf:      map[*discoveryv3.DiscoveryRequest]int64{},
		owedEDS:       map[int64]bool{},
		current:       map[string]cachev3.ResourceSnapshot{},
		watches:       map[string]map[*sotwWatch]struct{}{},
		answers:       map[string]map[answerKey]*sotwAnswer{},
	}
}

// Groups is the cache's map of nodes to groups.
func (g *Cache) Groups() *Groups { return g.groups }

// Reject records that a node, on a stream, rejected a version of a type
// that it had asked for with names (none: every resource) as a member of
// group.
func (g *Cache) Reject(nodeID string, streamID int64, group, typeURL, version string, names []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	byType := g.rejected[nodeID]
	if byType == nil {
		byType = map[string]*rejection{}
		g.rejected[nodeID] = byType
	}
	r := byType[typeURL]
	if r == nil || r.version != version || r.group != group {
		if r == nil {
			g.nRejects++
		}
		r = &rejection{group: group, version: version, names: map[string]bool{}, streams: map[int64]bool{}}
		byType[typeURL] = r
	}
	g.seq++
	r.seq = g.seq
	r.at = time.Now().UTC()
	if len(names) == 0 || len(r.names)+len(names) > maxRejectedNames {
		// Every resource, or more names than are worth remembering one by
		// one: the rejection covers every name, as for a wildcard request.
		r.all, r.names = true, nil
	}
	if !r.all {
		for _, n := range names {
			r.names[n] = true
		}
	}
	if len(r.streams) < maxRejectingStreams {
		r.streams[streamID] = true
	}
	for g.nRejects > maxRejections {
		g.dropOldestLocked()
	}
}

// dropOldestLocked forgets the oldest rejection, in one pass over them
// (only when the bound is reached). g.mu must be held.
func (g *Cache) dropOldestLocked() {
	var oldNode, oldType string
	var oldSeq uint64
	found := false
	for node, byType := range g.rejected {
		for t, r := range byType {
			if !found || r.seq < oldSeq {
				oldNode, oldType, oldSeq, found = node, t, r.seq, true
			}
		}
	}
	if !found {
		g.nRejects = 0
		return
	}
	g.forgetLocked(oldNode, oldType)
}

func (g *Cache) forgetLocked(nodeID, typeURL string) {
	if byType := g.rejected[nodeID]; byType != nil {
		if _, ok := byType[typeURL]; ok {
			delete(byType, typeURL)
			g.nRejects--
		}
		if len(byType) == 0 {
			delete(g.rejected, nodeID)
		}
	}
}

// Forget drops the rejections that no longer apply: their group has
// another version of the type. A group with no snapshot here keeps its
// records: they may be another replica's (see Adopt), waiting for a proxy
// that moves here, and the version they name is judged when the group is
// built; their number is bounded by maxRejections.
func (g *Cache) Forget() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for node, byType := range g.rejected {
		for t, r := range byType {
			snap := g.current[r.group]
			if snap != nil && snap.GetVersion(t) != r.version {
				g.forgetLocked(node, t)
			}
		}
	}
}

// setDetail records the error a node gave for its rejection of a type.
func (g *Cache) setDetail(nodeID, typeURL, detail string) {
	g.mu.Lock()
	if r := g.rejected[nodeID][typeURL]; r != nil {
		r.detail = detail
	}
	g.mu.Unlock()
}

// Rejections returns how many rejections are remembered.
func (g *Cache) Rejections() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.nRejects
}

// holdsBack reports whether a watch would only resend what its node
// rejected. g.mu must be held.
func (g *Cache) holdsBack(w *sotwWatch, version string, resources map[string]types.ResourceWithTTL) bool {
	node, t := w.req.GetNode().GetId(), w.req.GetTypeUrl()
	r := g.rejected[node][t]
	if r == nil {
		return false
	}
	if r.version != version {
		g.forgetLocked(node, t) // the group moved on: the rejection no longer applies
		return false
	}
	if w.req.GetVersionInfo() == "" && !r.streams[w.stream] {
		return false // nothing to keep, and nothing rejected on this stream
	}
	if r.all {
		return true
	}
	if w.sub.IsWildcard() {
		return false
	}
	for name := range w.sub.SubscribedResources() {
		if _, ok := resources[name]; ok && !r.names[name] {
			return false // something new to offer
		}
	}
	return true
}

// NoteRequest records the stream a request arrived on, for the watch the
// request is about to create; prev, the stream's previous request, is
// forgotten (it created no watch if its nonce was stale).
func (g *Cache) NoteRequest(req, prev *discoveryv3.DiscoveryRequest, streamID int64) {
	g.mu.Lock()
	if prev != nil {
		delete(g.streamOf, prev)
	}
	if req != nil {
		g.streamOf[req] = streamID
	}
	g.mu.Unlock()
}

// Sent records that a state-of-the-world response of a type went out on an
// Envoy's stream. After a CDS response, the stream is owed an EDS response:
// Envoy warms every cluster that response added or changed until an EDS
// response arrives after it, and asks for EDS again with the names and
// version it has. Publications send CDS before EDS, but an EDS request can
// be answered from a newer snapshot before that snapshot's CDS reaches the
// stream (Envoy holds its CDS ACK while clusters warm); its next EDS request
// must then be answered even though its version is current.
func (g *Cache) Sent(streamID int64, typeURL string) {
	switch typeURL {
	case resourcev3.ClusterType:
		g.owedMu.Lock()
		g.owedEDS[streamID] = true
		g.owedMu.Unlock()
	case resourcev3.EndpointType:
		g.owedMu.Lock()
		delete(g.owedEDS, streamID)
		g.owedMu.Unlock()
	}
}

// owes reports whether a stream is owed an EDS response (see Sent).
func (g *Cache) owes(streamID int64) bool {
	g.owedMu.Lock()
	defer g.owedMu.Unlock()
	return g.owedEDS[streamID]
}

// StreamClosed forgets a stream.
func (g *Cache) StreamClosed(streamID int64) {
	g.owedMu.Lock()
	delete(g.owedEDS, streamID)
	g.owedMu.Unlock()
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

// namesKey joins requested names into an answer key.
func namesKey(names []string) string { return strings.Join(names, "\x00") }
