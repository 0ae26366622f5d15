package xdsserver

import (
	"context"
	"maps"
	"sort"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// State-of-the-world watches are answered here rather than by the snapshot
// cache, with the same rules, so that every stream of a group shares one
// answer per type, version and set of names. The snapshot cache builds a
// response per stream: a wrapper per resource and a map of every returned
// resource name, which the stream then keeps until its next response. For
// 10,000 proxies subscribed to 100 clusters and 100 load assignments that
// was most of the memory of a connected proxy and of the work of a push.
// Delta watches, snapshots' storage and fetches stay with the cache.

// sotwWatch is an open state-of-the-world watch.
type sotwWatch struct {
	req *discoveryv3.DiscoveryRequest
	sub cachev3.Subscription
	ch  chan cachev3.Response
	// early: created before its group had a snapshot, so the first one is
	// checked against what the stream was sent, not only its version.
	early bool
	// stream is the tracker's ID of the watch's stream (0 if unknown).
	stream int64
}

// sotwAnswer is the answer to every watch of a group for one type, version
// and set of requested names. It is never modified once built.
type sotwAnswer struct {
	typeURL  string
	version  string
	anys     []*anypb.Any
	returned map[string]string // name → version, for the stream's subscription
}

type answerKey struct {
	typeURL string
	version string
	names   string // the requested names, joined; "" for all
}

// sotwResponse delivers a shared answer to one stream.
type sotwResponse struct {
	req *discoveryv3.DiscoveryRequest
	a   *sotwAnswer
}

// GetDiscoveryResponse returns a fresh response (the server writes its nonce
// into it) around the shared, already encoded resources.
func (r *sotwResponse) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) {
	return &discoveryv3.DiscoveryResponse{VersionInfo: r.a.version, Resources: r.a.anys, TypeUrl: r.a.typeURL}, nil
}

// GetRequest implements cachev3.Response.
func (r *sotwResponse) GetRequest() *discoveryv3.DiscoveryRequest { return r.req }

// GetVersion implements cachev3.Response.
func (r *sotwResponse) GetVersion() (string, error) { return r.a.version, nil }

// GetResponseVersion implements cachev3.Response.
func (r *sotwResponse) GetResponseVersion() string { return r.a.version }

// GetReturnedResources implements cachev3.Response. The stream keeps the
// map as its subscription's state and go-control-plane edits it in place
// (Subscription.SetResourceSubscription deletes the names a later request
// drops), so every stream gets its own copy: a shared map edited by one
// stream would make every other stream of the group look as if it had never
// been sent those resources, and be answered again on every ACK.
func (r *sotwResponse) GetReturnedResources() map[string]string { return maps.Clone(r.a.returned) }

// GetContext implements cachev3.Response.
func (r *sotwResponse) GetContext() context.Context { return context.Background() }

// CreateWatch answers a state-of-the-world watch at once when the group's
// snapshot has something the stream lacks, and otherwise holds it until a
// snapshot does. It holds a watch whose answer would be a version the node
// rejected, and every watch of a group that has no snapshot yet (after a
// restart, a proxy resumes with the version it last ACKed, often the very
// version the first build yields: it must still be answered on its new
// stream, which was never sent anything).
func (g *Cache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	g.pub.RLock()
	defer g.pub.RUnlock()
	group := g.hash.ID(req.GetNode())
	w := &sotwWatch{req: req, sub: sub, ch: ch}
	g.mu.Lock()
	defer g.mu.Unlock()
	w.stream = g.streamOf[req]
	delete(g.streamOf, req)
	snap := g.current[group]
	if snap != nil && g.due(w, snap, true) && g.answer(w, group, snap) {
		return func() {}, nil
	}
	w.early = w.early || snap == nil
	if g.watches[group] == nil {
		g.watches[group] = map[*sotwWatch]struct{}{}
	}
	g.watches[group][w] = struct{}{}
	return func() {
		g.mu.Lock()
		delete(g.watches[group], w)
		if len(g.watches[group]) == 0 {
			delete(g.watches, group)
		}
		g.mu.Unlock()
	}, nil
}

// SetSnapshot publishes a group's snapshot: the cache keeps it (for delta
// streams and fetches) and every held watch it has news for is answered,
// clusters first, then endpoints, listeners and routes, as Envoy wants them:
// endpoints that arrive before the CDS update that changed their cluster are
// applied to the old cluster, and the new one would wait for more.
//
// Delta streams are answered by the snapshot cache, in no particular order,
// so when clusters changed the cache is first given the new snapshot with
// the previous endpoints (each delta stream gets its clusters and listeners)
// and then the whole snapshot (each gets the endpoints that changed).
func (g *Cache) SetSnapshot(ctx context.Context, group string, snap cachev3.ResourceSnapshot) error {
	g.mu.Lock()
	prev := g.current[group]
	g.mu.Unlock()
	if interim := clustersFirst(prev, snap); interim != nil {
		if err := g.SnapshotCache.SetSnapshot(ctx, group, interim); err != nil {
			return err
		}
	}
	if err := g.SnapshotCache.SetSnapshot(ctx, group, snap); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.current[group] = snap
	for k := range g.answers[group] {
		if snap.GetVersion(k.typeURL) != k.version {
			delete(g.answers[group], k)
		}
	}
	held := make([]*sotwWatch, 0, len(g.watches[group]))
	for w := range g.watches[group] {
		held = append(held, w)
	}
	sort.SliceStable(held, func(i, j int) bool {
		return answerRank[held[i].req.GetTypeUrl()] < answerRank[held[j].req.GetTypeUrl()]
	})
	for _, w := range held {
		if g.due(w, snap, w.early) && g.answer(w, group, snap) {
			delete(g.watches[group], w)
		}
	}
	if len(g.watches[group]) == 0 {
		delete(g.watches, group)
	}
	return nil
}

// answerRank orders the answers of one publication: Envoy's recommended
// order, CDS, EDS, LDS, RDS.
var answerRank = map[string]int{
	resourcev3.ClusterType:  0,
	resourcev3.EndpointType: 1,
	resourcev3.ListenerType: 2,
	resourcev3.RouteType:    3,
}

// clustersFirst returns next with prev's endpoints when both the clusters
// and the endpoints changed, or nil when no interim step is needed.
func clustersFirst(prev, next cachev3.ResourceSnapshot) *cachev3.Snapshot {
	p, ok1 := prev.(*cachev3.Snapshot)
	n, ok2 := next.(*cachev3.Snapshot)
	if !ok1 || !ok2 || p == nil || n == nil {
		return nil
	}
	if p.GetVersion(resourcev3.ClusterType) == n.GetVersion(resourcev3.ClusterType) ||
		p.GetVersion(resourcev3.EndpointType) == n.GetVersion(resourcev3.EndpointType) {
		return nil
	}
	if p.ConstructVersionMap() != nil || n.ConstructVersionMap() != nil {
		return nil
	}
	eds := cachev3.GetResponseType(resourcev3.EndpointType)
	interim := &cachev3.Snapshot{Resources: n.Resources, VersionMap: make(map[string]map[string]string, len(n.VersionMap))}
	interim.Resources[eds] = p.Resources[eds]
	for t, m := range n.VersionMap {
		interim.VersionMap[t] = m
	}
	interim.VersionMap[resourcev3.EndpointType] = p.VersionMap[resourcev3.EndpointType]
	return interim
}

// ClearSnapshot forgets a group.
func (g *Cache) ClearSnapshot(group string) {
	g.SnapshotCache.ClearSnapshot(group)
	g.mu.Lock()
	delete(g.current, group)
	delete(g.answers, group)
	g.mu.Unlock()
}

// due reports whether a watch has something to be sent, as the snapshot
// cache decides it: a version other than the one the request carries, or
// (with full, when the watch is new to this snapshot) a resource the stream
// subscribes to and was never sent. Never only what the node rejected
// (see Cache).
// g.mu must be held.
func (g *Cache) due(w *sotwWatch, snap cachev3.ResourceSnapshot, full bool) bool {
	t := w.req.GetTypeUrl()
	version := snap.GetVersion(t)
	resources := snap.GetResourcesAndTTL(t)
	if g.holdsBack(w, version, resources) {
		return false
	}
	if w.req.GetVersionInfo() != version {
		return true
	}
	if t == resourcev3.EndpointType && g.owes(w.stream) {
		return true // a CDS response went out since its last EDS response (see Sent)
	}
	if !full {
		return false
	}
	returned := w.sub.ReturnedResources()
	if w.sub.IsWildcard() {
		for name := range resources {
			if _, ok := returned[name]; !ok {
				return true
			}
		}
		return false
	}
	for name := range w.sub.SubscribedResources() {
		if _, ok := returned[name]; !ok {
			if _, ok := resources[name]; ok {
				return true
			}
		}
	}
	return false
}

// answer sends a watch the shared answer for its request, building it on
// first use, and reports whether it was sent. It never blocks: g.mu (and,
// while a round is published, the publish lock) is held, and the stream
// that reads the channel may be waiting for those locks. The channel has
// room (go-control-plane's ordered-ADS channel holds ten responses, and a
// stream has at most one watch per type, of the four types served); were
// it full, the watch stays held and is answered by the next snapshot.
// g.mu must be held.
func (g *Cache) answer(w *sotwWatch, group string, snap cachev3.ResourceSnapshot) bool {
	t := w.req.GetTypeUrl()
	names := w.req.GetResourceNames()
	k := answerKey{typeURL: t, version: snap.GetVersion(t), names: namesKey(names)}
	a := g.answers[group][k]
	if a == nil {
		a = buildAnswer(t, k.version, snap.GetResourcesAndTTL(t), names)
		if g.answers[group] == nil {
			g.answers[group] = map[answerKey]*sotwAnswer{}
		}
		g.answers[group][k] = a
	}
	select {
	case w.ch <- &sotwResponse{req: w.req, a: a}:
		return true
	default:
		g.blocked++
		return false
	}
}

// buildAnswer encodes the resources a request asks for (all of them without
// names), as the snapshot cache's responses do. Sealed resources encode to
// the bytes they hold.
func buildAnswer(typeURL, version string, resources map[string]types.ResourceWithTTL, names []string) *sotwAnswer {
	a := &sotwAnswer{typeURL: typeURL, version: version, returned: make(map[string]string, len(resources))}
	add := func(name string, r types.Resource) {
		b, err := cachev3.MarshalResource(r)
		if err != nil {
			return // cannot happen: the build encoded every resource already
		}
		a.anys = append(a.anys, &anypb.Any{TypeUrl: typeURL, Value: b})
		a.returned[name] = version
	}
	if len(names) == 0 {
		for name, r := range resources {
			add(name, r.Resource)
		}
		return a
	}
	for _, name := range names {
		if r, ok := resources[name]; ok {
			if _, dup := a.returned[name]; !dup {
				add(name, r.Resource)
			}
		}
	}
	return a
}

// parkedCount returns how many watches are held, for tests.
func (g *Cache) parkedCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, ws := range g.watches {
		n += len(ws)
	}
	return n
}
