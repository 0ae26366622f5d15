package xdsserver

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver/limits"
	"github.com/bulwarkmesh/bulwark/xds/ir"
)

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
	// lastReq is the stream's last request, whose stream the cache noted.
	lastReq *discoveryv3.DiscoveryRequest
	// gen is the generation of known callers the stream's group was
	// chosen with; when it moves, the group is chosen again.
	gen uint64
}

// Tracker follows every stream and proxy: ACKs, NACKs, versions. It
// implements go-control-plane's server callbacks.
type Tracker struct {
	replica string
	cache   *Cache
	metrics *metrics.Metrics
	admit   *limits.Admission
	// OnConnect is called for the first stream of a node, before its watches
	// are created, so its group can be built first. Set it before serving.
	OnConnect func(GroupKey)
	// OnDirty is called when a proxy's status changed (for persistence).
	// Set it before serving.
	OnDirty func(nodeID string)
	// OnReject is called when this replica's guard recorded that a node
	// rejected a type (for sharing with the other replicas; see
	// Rejection). Set it before serving.
	OnReject func(nodeID, typeURL string)
	// onSent, when set, sees every response sent; tests count resends with
	// it (SetOnSent). Guarded by mu.
	onSent func(nodeID, typeURL, version string)

	// streamsMu guards streams alone, so that a stream's requests and
	// responses need not wait for mu, which every ACK of the fleet takes.
	streamsMu sync.RWMutex
	streams   map[int64]*streamState

	mu      sync.Mutex
	proxies map[string]*api.ProxyStatus
	// members: group → node ID → status, so work for a group touches its
	// proxies only, not the whole fleet.
	members map[string]map[string]*api.ProxyStatus
	conns   map[string]int // node ID → open streams
	// versions: group → type URL → version → build info (bounded).
	versions map[string]map[string]map[string]versionInfo
	// current: group → type URL → current version.
	current map[string]map[string]string
}

// NewTracker returns a tracker of replica's streams, which rejects what its
// proxies NACK in cache and logs refused clients to log (nil: no log).
func NewTracker(replica string, cache *Cache, m *metrics.Metrics, log ...*slog.Logger) *Tracker {
	adm := &limits.Admission{Refused: func(reason string) { m.Refused.WithLabelValues(reason).Inc() }}
	if len(log) > 0 {
		adm.Log = log[0]
	}
	cache.groups.onIgnored = func(node *corev3.Node) {
		_ = adm.Refuse(limits.RefusedOutbound, node, fmt.Sprintf("more than %d distinct outbound addresses (%s) in use: this one is ignored, the proxy gets the default listener address", MaxOutboundOverrides, OutboundMetadataKey))
	}
	return &Tracker{
		replica:  replica,
		cache:    cache,
		metrics:  m,
		admit:    adm,
		streams:  map[int64]*streamState{},
		proxies:  map[string]*api.ProxyStatus{},
		members:  map[string]map[string]*api.ProxyStatus{},
		conns:    map[string]int{},
		versions: map[string]map[string]map[string]versionInfo{},
		current:  map[string]map[string]string{},
	}
}

// OnStreamOpen implements the server callbacks.
func (t *Tracker) OnStreamOpen(_ context.Context, id int64, _ string) error {
	t.streamsMu.Lock()
	t.streams[id] = &streamState{sent: map[string]sentResponse{}}
	t.streamsMu.Unlock()
	return nil
}

// stream returns a stream's state, creating it if needed.
func (t *Tracker) stream(id int64) *streamState {
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
func (t *Tracker) OnStreamClosed(id int64, _ *corev3.Node) { t.closed(id) }

// deltaID maps a delta stream's ID into the tracker's: go-control-plane's
// state-of-the-world and delta servers number their streams separately,
// both from 1, so a delta stream takes the negative of its number.
func deltaID(id int64) int64 { return -id }

// OnDeltaStreamOpen implements the server callbacks.
func (t *Tracker) OnDeltaStreamOpen(ctx context.Context, id int64, typ string) error {
	return t.OnStreamOpen(ctx, deltaID(id), typ)
}

// OnDeltaStreamClosed implements the server callbacks.
func (t *Tracker) OnDeltaStreamClosed(id int64, _ *corev3.Node) { t.closed(deltaID(id)) }

func (t *Tracker) closed(id int64) {
	t.streamsMu.Lock()
	st := t.streams[id]
	delete(t.streams, id)
	t.streamsMu.Unlock()
	if st != nil && st.lastReq != nil {
		t.cache.NoteRequest(nil, st.lastReq, id)
	}
	t.cache.StreamClosed(id)
	t.mu.Lock()
	var gone *api.ProxyStatus
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
		t.metrics.Connected.WithLabelValues(string(gone.Flavor)).Dec()
		t.dirty(gone.ID)
	}
}

// register attaches a stream to its node on the stream's first request,
// and moves the node to another group when the known callers changed.
func (t *Tracker) register(id int64, node *corev3.Node, protocol string) *streamState {
	st := t.stream(id)
	if st.nodeID != "" {
		if gen := t.cache.groups.Generation(); gen != st.gen {
			st.gen = gen
			t.regroup(st.nodeID, node)
		}
		return st
	}
	st.nodeID = node.GetId()
	st.gen = t.cache.groups.Generation()
	key := t.cache.groups.Of(node)
	prior := t.cache.rejectionsOf(st.nodeID)
	t.mu.Lock()
	t.conns[st.nodeID]++
	fresh := t.proxies[st.nodeID] == nil
	if fresh {
		p := &api.ProxyStatus{
			ID: st.nodeID, Service: node.GetCluster(), Flavor: key.Flavor, Group: key.String(),
			Replica: t.replica, ConnectedAt: time.Now().UTC(), Protocol: protocol,
			Types: map[string]*api.TypeStatus{},
		}
		// What it rejected before, here or on another replica, and is held
		// back from it: it is rejecting, not converged on what it gets.
		for _, rj := range prior {
			markRejected(p, rj)
		}
		t.proxies[st.nodeID] = p
		if t.members[p.Group] == nil {
			t.members[p.Group] = map[string]*api.ProxyStatus{}
		}
		t.members[p.Group][p.ID] = p
	}
	t.mu.Unlock()
	if fresh {
		t.metrics.Connected.WithLabelValues(string(key.Flavor)).Inc()
		if t.OnConnect != nil {
			t.OnConnect(key)
		}
		t.dirty(st.nodeID)
	}
	return st
}

// regroup moves a node to the group it belongs to now (a Service for its
// node.cluster was declared, or removed): its next watches are created in
// that group, so its status must be judged there.
func (t *Tracker) regroup(nodeID string, node *corev3.Node) {
	key := t.cache.groups.Of(node)
	t.mu.Lock()
	p := t.proxies[nodeID]
	moved := p != nil && p.Group != key.String()
	if moved {
		delete(t.members[p.Group], p.ID)
		if len(t.members[p.Group]) == 0 {
			delete(t.members, p.Group)
		}
		p.Group = key.String()
		if t.members[p.Group] == nil {
			t.members[p.Group] = map[string]*api.ProxyStatus{}
		}
		t.members[p.Group][p.ID] = p
		t.refreshLocked(p)
	}
	t.mu.Unlock()
	if moved {
		if t.OnConnect != nil {
			t.OnConnect(key)
		}
		t.dirty(nodeID)
	}
}

// OnStreamRequest implements the server callbacks: it sorts ACKs from NACKs.
// Requests beyond the limits (an unknown type URL, an oversized node) end
// the stream with InvalidArgument.
func (t *Tracker) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	if err := t.check(id, req.GetNode(), req.GetTypeUrl()); err != nil {
		return err
	}
	st := t.register(id, req.GetNode(), "sotw")
	t.cache.NoteRequest(req, st.lastReq, id)
	st.lastReq = req
	sent, ok := st.sent[req.GetTypeUrl()]
	if !ok || req.GetResponseNonce() == "" || req.GetResponseNonce() != sent.nonce {
		return nil // an initial request, a subscription change, or a stale nonce
	}
	if req.GetErrorDetail() != nil {
		t.nack(st.nodeID, req.GetTypeUrl(), sent.version, req.GetErrorDetail().GetMessage())
		t.reject(id, st.nodeID, req)
	} else {
		t.ack(st.nodeID, req.GetTypeUrl(), req.GetVersionInfo())
	}
	return nil
}

// OnStreamResponse implements the server callbacks.
func (t *Tracker) OnStreamResponse(_ context.Context, id int64, req *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	if FlavorOf(req.GetNode()) == ir.FlavorEnvoy {
		t.cache.Sent(id, req.GetTypeUrl())
	}
	t.sent(id, req.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

// OnStreamDeltaRequest implements the server callbacks.
// Delta rejections need no guard: go-control-plane's delta server
// remembers what it sent, not what was accepted, and does not resend it.
func (t *Tracker) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	id = deltaID(id)
	if err := t.check(id, req.GetNode(), req.GetTypeUrl()); err != nil {
		return err
	}
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
func (t *Tracker) OnStreamDeltaResponse(id int64, req *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	t.sent(deltaID(id), req.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

// OnFetchRequest implements the server callbacks.
func (t *Tracker) OnFetchRequest(context.Context, *discoveryv3.DiscoveryRequest) error { return nil }

// OnFetchResponse implements the server callbacks.
func (t *Tracker) OnFetchResponse(*discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {}

func (t *Tracker) sent(id int64, typeURL, nonce, version string) {
	t.metrics.Pushes.WithLabelValues(typeLabel(typeURL)).Inc()
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
		ts := typeStatus(p, typeURL)
		ts.Sent = version
	}
	if t.onSent != nil {
		t.onSent(st.nodeID, typeURL, version)
	}
}
