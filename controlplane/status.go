package controlplane

import (
	"context"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// ProxyStatus is what Bulwark knows of one connected proxy.
type ProxyStatus struct {
	ID          string    `json:"id"`
	Service     string    `json:"service"`
	Flavor      ir.Flavor `json:"flavor"`
	Group       string    `json:"group"`
	Replica     string    `json:"replica"`
	ConnectedAt time.Time `json:"connectedAt"`
	// Protocol is "sotw" or "delta".
	Protocol string `json:"protocol"`
	// Types maps a short type name (listeners, routes, clusters, endpoints)
	// to the proxy's state for it.
	Types map[string]*TypeStatus `json:"types"`
	// Converged is true when the proxy has ACKed its group's current version
	// of every type it subscribes to.
	Converged bool `json:"converged"`
	// Revision is the store revision the proxy's config corresponds to, when
	// every type it ACKed came from one build.
	Revision int64 `json:"revision,omitempty"`
}

// TypeStatus is a proxy's state for one resource type.
type TypeStatus struct {
	Sent          string    `json:"sent,omitempty"`
	Acked         string    `json:"acked,omitempty"`
	AckedRevision int64     `json:"ackedRevision,omitempty"`
	AckedAt       time.Time `json:"ackedAt,omitzero"`
	LastNack      *Nack     `json:"lastNack,omitempty"`
}

// Nack is a rejection a proxy reported.
type Nack struct {
	Version string    `json:"version"`
	Error   string    `json:"error"`
	Time    time.Time `json:"time"`
}

// shortType names resource types for people.
var shortType = map[string]string{
	resourcev3.ListenerType: "listeners",
	resourcev3.RouteType:    "routes",
	resourcev3.ClusterType:  "clusters",
	resourcev3.EndpointType: "endpoints",
}

// versionInfo says which build produced a version of a group's type.
type versionInfo struct {
	revision   int64
	observedAt time.Time // when the revision that caused it was first seen
}

// sentResponse remembers what a stream was sent, to attribute ACKs and NACKs.
type sentResponse struct{ nonce, version string }

// streamState is one stream's view. go-control-plane calls every callback
// of a stream from that stream's one goroutine, so its fields need no lock;
// only the map of streams is shared.
type streamState struct {
	nodeID string
	sent   map[string]sentResponse // type URL → last response
}

// tracker follows every stream and proxy: ACKs, NACKs, versions. It
// implements go-control-plane's server callbacks.
type tracker struct {
	replica string
	cache   *guardedCache
	metrics *metrics
	// onConnect is called for the first stream of a node, before its watches
	// are created, so its group can be built first.
	onConnect func(GroupKey)
	// onDirty is called when a proxy's status changed (for persistence).
	onDirty func(nodeID string)
	// onSent, when set, sees every response sent; tests count resends with it.
	onSent func(nodeID, typeURL, version string)

	// streamsMu guards streams alone, so that a stream's requests and
	// responses need not wait for mu, which every ACK of the fleet takes.
	streamsMu sync.RWMutex
	streams   map[int64]*streamState

	mu      sync.Mutex
	proxies map[string]*ProxyStatus
	// members: group → node ID → status, so work for a group touches its
	// proxies only, not the whole fleet.
	members map[string]map[string]*ProxyStatus
	conns   map[string]int // node ID → open streams
	// versions: group → type URL → version → build info (bounded).
	versions map[string]map[string]map[string]versionInfo
	// current: group → type URL → current version.
	current map[string]map[string]string
}

func newTracker(replica string, cache *guardedCache, m *metrics) *tracker {
	return &tracker{
		replica:  replica,
		cache:    cache,
		metrics:  m,
		streams:  map[int64]*streamState{},
		proxies:  map[string]*ProxyStatus{},
		members:  map[string]map[string]*ProxyStatus{},
		conns:    map[string]int{},
		versions: map[string]map[string]map[string]versionInfo{},
		current:  map[string]map[string]string{},
	}
}

// maxVersionsKept bounds the per-type version history of a group.
const maxVersionsKept = 64

// publication says that a group now serves versions (type URL → version)
// built from a store revision first observed at observedAt.
type publication struct {
	group      string
	versions   map[string]string
	revision   int64
	observedAt time.Time
}

// published records publications. It takes the tracker's lock once for a
// whole round of builds, however many groups, types and proxies: every ACK
// of the fleet contends for that lock.
func (t *tracker) published(pubs ...publication) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, pub := range pubs {
		t.publishedLocked(pub)
	}
}

func (t *tracker) publishedLocked(pub publication) {
	group, revision, observedAt := pub.group, pub.revision, pub.observedAt
	byType := t.versions[group]
	if byType == nil {
		byType = map[string]map[string]versionInfo{}
		t.versions[group] = byType
	}
	if t.current[group] == nil {
		t.current[group] = map[string]string{}
	}
	for typeURL, version := range pub.versions {
		vs := byType[typeURL]
		if vs == nil {
			vs = map[string]versionInfo{}
			byType[typeURL] = vs
		}
		if old, ok := vs[version]; ok && old.revision <= revision {
			// Same content rebuilt later: it also answers the newer revision.
			vs[version] = versionInfo{revision: revision, observedAt: old.observedAt}
		} else {
			if len(vs) >= maxVersionsKept {
				oldest := ""
				for v, info := range vs {
					if oldest == "" || info.revision < vs[oldest].revision {
						oldest = v
					}
				}
				delete(vs, oldest)
			}
			vs[version] = versionInfo{revision: revision, observedAt: observedAt}
		}
		t.current[group][typeURL] = version
	}
	for id, p := range t.members[group] {
		t.refreshLocked(p)
		t.dirty(id)
	}
}

// OnStreamOpen implements the server callbacks.
func (t *tracker) OnStreamOpen(_ context.Context, id int64, _ string) error {
	t.streamsMu.Lock()
	t.streams[id] = &streamState{sent: map[string]sentResponse{}}
	t.streamsMu.Unlock()
	return nil
}

// stream returns a stream's state, creating it if needed.
func (t *tracker) stream(id int64) *streamState {
	t.streamsMu.RLock()
	st := t.streams[id]
	t.streamsMu.RUnlock()
	if st != nil {
		return st
	}
	t.streamsMu.Lock()
	defer t.streamsMu.Unlock()
	if st = t.streams[id]; st == nil {
		st = &streamState{sent: map[string]sentResponse{}}
		t.streams[id] = st
	}
	return st
}

// OnStreamClosed implements the server callbacks.
func (t *tracker) OnStreamClosed(id int64, _ *corev3.Node) { t.closed(id) }

// OnDeltaStreamOpen implements the server callbacks.
func (t *tracker) OnDeltaStreamOpen(ctx context.Context, id int64, typ string) error {
	return t.OnStreamOpen(ctx, id, typ)
}

// OnDeltaStreamClosed implements the server callbacks.
func (t *tracker) OnDeltaStreamClosed(id int64, _ *corev3.Node) { t.closed(id) }

func (t *tracker) closed(id int64) {
	t.streamsMu.Lock()
	st := t.streams[id]
	delete(t.streams, id)
	t.streamsMu.Unlock()
	t.mu.Lock()
	var gone *ProxyStatus
	if st != nil && st.nodeID != "" {
		t.conns[st.nodeID]--
		if t.conns[st.nodeID] <= 0 {
			delete(t.conns, st.nodeID)
			gone = t.proxies[st.nodeID]
			delete(t.proxies, st.nodeID)
			if gone != nil {
				delete(t.members[gone.Group], gone.ID)
				if len(t.members[gone.Group]) == 0 {
					delete(t.members, gone.Group)
				}
			}
		}
	}
	t.mu.Unlock()
	if gone != nil {
		t.metrics.connected.WithLabelValues(string(gone.Flavor)).Dec()
		t.dirty(gone.ID)
	}
}

// register attaches a stream to its node on the stream's first request.
func (t *tracker) register(id int64, node *corev3.Node, protocol string) *streamState {
	st := t.stream(id)
	if st.nodeID != "" {
		return st
	}
	st.nodeID = node.GetId()
	t.mu.Lock()
	t.conns[st.nodeID]++
	key := GroupOf(node)
	fresh := t.proxies[st.nodeID] == nil
	if fresh {
		p := &ProxyStatus{
			ID: st.nodeID, Service: key.Service, Flavor: key.Flavor, Group: key.String(),
			Replica: t.replica, ConnectedAt: time.Now().UTC(), Protocol: protocol,
			Types: map[string]*TypeStatus{},
		}
		t.proxies[st.nodeID] = p
		if t.members[p.Group] == nil {
			t.members[p.Group] = map[string]*ProxyStatus{}
		}
		t.members[p.Group][p.ID] = p
	}
	t.mu.Unlock()
	if fresh {
		t.metrics.connected.WithLabelValues(string(key.Flavor)).Inc()
		if t.onConnect != nil {
			t.onConnect(key)
		}
		t.dirty(st.nodeID)
	}
	return st
}

// OnStreamRequest implements the server callbacks: it sorts ACKs from NACKs.
func (t *tracker) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	st := t.register(id, req.GetNode(), "sotw")
	sent, ok := st.sent[req.GetTypeUrl()]
	if !ok || req.GetResponseNonce() == "" || req.GetResponseNonce() != sent.nonce {
		return nil // an initial request, a subscription change, or a stale nonce
	}
	if req.GetErrorDetail() != nil {
		t.nack(st.nodeID, req.GetTypeUrl(), sent.version, req.GetErrorDetail().GetMessage())
	} else {
		t.ack(st.nodeID, req.GetTypeUrl(), req.GetVersionInfo())
	}
	return nil
}

// OnStreamResponse implements the server callbacks.
func (t *tracker) OnStreamResponse(_ context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	t.sent(id, req.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

// OnStreamDeltaRequest implements the server callbacks.
func (t *tracker) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	st := t.register(id, req.GetNode(), "delta")
	sent, ok := st.sent[req.GetTypeUrl()]
	if !ok || req.GetResponseNonce() == "" || req.GetResponseNonce() != sent.nonce {
		return nil
	}
	if req.GetErrorDetail() != nil {
		t.nack(st.nodeID, req.GetTypeUrl(), sent.version, req.GetErrorDetail().GetMessage())
	} else {
		t.ack(st.nodeID, req.GetTypeUrl(), sent.version)
	}
	return nil
}

// OnStreamDeltaResponse implements the server callbacks.
func (t *tracker) OnStreamDeltaResponse(id int64, req *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	t.sent(id, req.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

// OnFetchRequest implements the server callbacks.
func (t *tracker) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error { return nil }

// OnFetchResponse implements the server callbacks.
func (t *tracker) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}

func (t *tracker) sent(id int64, typeURL, nonce, version string) {
	t.metrics.pushes.WithLabelValues(typeLabel(typeURL)).Inc()
	t.streamsMu.RLock()
	st := t.streams[id]
	t.streamsMu.RUnlock()
	if st == nil {
		return
	}
	st.sent[typeURL] = sentResponse{nonce: nonce, version: version}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.proxies[st.nodeID]; p != nil {
		ts := p.typeStatus(typeURL)
		ts.Sent = version
	}
	if t.onSent != nil {
		t.onSent(st.nodeID, typeURL, version)
	}
}

func (t *tracker) ack(nodeID, typeURL, version string) {
	t.mu.Lock()
	p := t.proxies[nodeID]
	if p == nil {
		t.mu.Unlock()
		return
	}
	ts := p.typeStatus(typeURL)
	first := ts.Acked != version
	ts.Acked, ts.AckedAt = version, time.Now().UTC()
	info, known := t.versions[p.Group][typeURL][version]
	if known {
		ts.AckedRevision = info.revision
	}
	t.refreshLocked(p)
	t.mu.Unlock()
	if first && known && !info.observedAt.IsZero() {
		t.metrics.convergence.Observe(time.Since(info.observedAt).Seconds())
	}
	t.dirty(nodeID)
}

func (t *tracker) nack(nodeID, typeURL, version, detail string) {
	t.metrics.nacks.WithLabelValues(typeLabel(typeURL)).Inc()
	t.cache.Reject(nodeID, typeURL, version)
	t.mu.Lock()
	if p := t.proxies[nodeID]; p != nil {
		p.typeStatus(typeURL).LastNack = &Nack{Version: version, Error: detail, Time: time.Now().UTC()}
		t.refreshLocked(p)
	}
	t.mu.Unlock()
	t.dirty(nodeID)
}

func (t *tracker) dirty(nodeID string) {
	if t.onDirty != nil {
		t.onDirty(nodeID)
	}
}

// refreshLocked recomputes a proxy's convergence. t.mu must be held.
func (t *tracker) refreshLocked(p *ProxyStatus) {
	cur := t.current[p.Group]
	p.Converged = len(p.Types) > 0
	var rev int64
	for typeURL, short := range shortType {
		ts := p.Types[short]
		if ts == nil {
			continue
		}
		if cur[typeURL] == "" || ts.Acked != cur[typeURL] {
			p.Converged = false
		}
		if rev == 0 || (ts.AckedRevision != 0 && ts.AckedRevision < rev) {
			rev = ts.AckedRevision
		}
	}
	p.Revision = rev
	if p.Converged {
		// Every type is the current build: the proxy runs the group's revision.
		for typeURL := range shortType {
			if info, ok := t.versions[p.Group][typeURL][cur[typeURL]]; ok && info.revision > p.Revision {
				p.Revision = info.revision
			}
		}
	}
}

func (p *ProxyStatus) typeStatus(typeURL string) *TypeStatus {
	short := typeLabel(typeURL)
	ts := p.Types[short]
	if ts == nil {
		ts = &TypeStatus{}
		p.Types[short] = ts
	}
	return ts
}

func typeLabel(typeURL string) string {
	if s, ok := shortType[typeURL]; ok {
		return s
	}
	return typeURL
}

// Proxies returns a copy of every proxy's status, sorted by ID.
func (t *tracker) Proxies() []ProxyStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]ProxyStatus, 0, len(t.proxies))
	for _, p := range t.proxies {
		out = append(out, p.clone())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Proxy returns one proxy's status.
func (t *tracker) Proxy(id string) (ProxyStatus, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.proxies[id]
	if !ok {
		return ProxyStatus{}, false
	}
	return p.clone(), true
}

func (p *ProxyStatus) clone() ProxyStatus {
	c := *p
	c.Types = make(map[string]*TypeStatus, len(p.Types))
	for k, v := range p.Types {
		tc := *v
		if v.LastNack != nil {
			n := *v.LastNack
			tc.LastNack = &n
		}
		c.Types[k] = &tc
	}
	return c
}

// Groups returns the groups that have at least one connected proxy.
func (t *tracker) Groups() map[string]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]bool, len(t.members))
	for g := range t.members {
		out[g] = true
	}
	return out
}
