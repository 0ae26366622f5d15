package envoymodel

import (
	"sort"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
)

const (
	typeCluster  = resourcev3.ClusterType
	typeEndpoint = resourcev3.EndpointType
	typeListener = resourcev3.ListenerType
	typeRoute    = resourcev3.RouteType
)

// apiState is the per-type state of the mux (GrpcMuxImpl::ApiState for SotW,
// DeltaSubscriptionState plus the pausable ACK queue for delta).
type apiState struct {
	typeURL    string
	wildcard   bool // CDS and LDS
	subscribed bool // a watch exists; requests are sent and re-sent on reconnect
	pauses     int
	pending    bool // a request was asked for (SotW: elided while paused)

	// SotW.
	version   string // last accepted version_info
	nonce     string
	errDetail *statuspb.Status
	ackOwed   bool // the next request acknowledges a response

	// Delta.
	versions map[string]string   // accepted resource versions
	sent     map[string]struct{} // names the server was told we want
	fresh    bool                // nothing sent yet on this stream
	acks     []deltaAck
}

type deltaAck struct {
	nonce string
	err   *statuspb.Status
}

func (e *Envoy) typeState(typeURL string) *apiState {
	t := e.types[typeURL]
	if t == nil {
		t = &apiState{
			typeURL:  typeURL,
			wildcard: typeURL == typeCluster || typeURL == typeListener,
			versions: map[string]string{},
			fresh:    true,
		}
		e.types[typeURL] = t
	}
	return t
}

// subscribe starts requesting a type (the first addWatch for it) and queues a request.
func (e *Envoy) subscribe(t *apiState) {
	if !t.subscribed {
		t.subscribed = true
		e.order = append(e.order, t.typeURL)
	}
	e.queue(t)
}

// queue asks for a request of type t; it goes out now unless t is paused.
func (e *Envoy) queue(t *apiState) {
	if !t.subscribed {
		return
	}
	t.pending = true
	e.flush(t)
}

func (e *Envoy) pause(t *apiState) { t.pauses++ }

func (e *Envoy) resume(t *apiState) {
	t.pauses--
	if t.pauses == 0 {
		e.flush(t)
	}
}

func (e *Envoy) streamUp() bool { return e.sotw != nil || e.delta != nil }

func (e *Envoy) flush(t *apiState) {
	if t.pauses > 0 || !e.streamUp() {
		return
	}
	if e.opts.Mode == SotW {
		if t.pending {
			t.pending = false
			e.sendSotw(t)
		}
		return
	}
	for len(t.acks) > 0 && e.streamUp() {
		ack := t.acks[0]
		t.acks = t.acks[1:]
		e.sendDelta(t, &ack)
	}
	if t.pending && e.deltaWantsSend(t) {
		e.sendDelta(t, nil)
	}
	t.pending = false
}

// names is the set of resource names a type's watches ask for (empty for wildcard).
// The set may be shared and must not be modified.
func (e *Envoy) names(t *apiState) map[string]struct{} {
	out := map[string]struct{}{}
	switch t.typeURL {
	case typeEndpoint:
		out, _ = e.edsWatches()
	case typeRoute:
		for n := range e.routes {
			out[n] = struct{}{}
		}
	}
	return out
}

func sorted(set map[string]struct{}) []string {
	if len(set) == 0 {
		return nil
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (e *Envoy) sendSotw(t *apiState) {
	req := &discoverygrpc.DiscoveryRequest{
		VersionInfo:   t.version,
		TypeUrl:       t.typeURL,
		ResponseNonce: t.nonce,
		ErrorDetail:   t.errDetail,
	}
	switch {
	case t.typeURL == typeEndpoint:
		_, req.ResourceNames = e.edsWatches() // shared: the request is not modified
	case !t.wildcard:
		req.ResourceNames = sorted(e.names(t))
	}
	if e.firstReq {
		req.Node = e.node
		e.firstReq = false
	}
	nack := t.errDetail != nil
	t.errDetail = nil
	e.countSent(t, t.ackOwed, nack)
	t.ackOwed = false
	if err := e.sotw.Send(req); err != nil {
		e.sotw, e.err = nil, err
	}
}

func (e *Envoy) deltaWantsSend(t *apiState) bool {
	want := e.names(t)
	if t.fresh {
		return t.wildcard || len(want) > 0
	}
	if t.wildcard {
		return false
	}
	if len(want) != len(t.sent) {
		return true
	}
	for n := range want {
		if _, ok := t.sent[n]; !ok {
			return true
		}
	}
	return false
}

func (e *Envoy) sendDelta(t *apiState, ack *deltaAck) {
	req := &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: t.typeURL, Node: e.node}
	want := e.names(t)
	switch {
	case t.fresh:
		t.fresh = false
		if len(t.versions) > 0 {
			req.InitialResourceVersions = make(map[string]string, len(t.versions))
			for n, v := range t.versions {
				req.InitialResourceVersions[n] = v
			}
		}
		if !t.wildcard {
			req.ResourceNamesSubscribe = sorted(want)
		}
	case !t.wildcard:
		for n := range want {
			if _, ok := t.sent[n]; !ok {
				req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
			}
		}
		for n := range t.sent {
			if _, ok := want[n]; !ok {
				req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
				delete(t.versions, n)
			}
		}
		sort.Strings(req.ResourceNamesSubscribe)
		sort.Strings(req.ResourceNamesUnsubscribe)
	}
	if !t.wildcard {
		t.sent = want
	}
	if ack != nil {
		req.ResponseNonce = ack.nonce
		req.ErrorDetail = ack.err
	}
	e.countSent(t, ack != nil, ack != nil && ack.err != nil)
	if err := e.delta.Send(req); err != nil {
		e.delta, e.err = nil, err
	}
}

func (e *Envoy) countSent(t *apiState, ack, nack bool) {
	e.count(t.typeURL, func(s *TypeStats) {
		s.Requests++
		switch {
		case ack && nack:
			s.NACKs++
		case ack:
			s.ACKs++
		}
	})
}

// onStreamEstablished re-sends every subscription in subscription order.
func (e *Envoy) onStreamEstablished() {
	e.firstReq = true
	for _, url := range e.order {
		t := e.types[url]
		t.nonce, t.ackOwed, t.acks, t.fresh = "", false, nil, true
		e.queue(t)
	}
}

func nackStatus(err error) *statuspb.Status {
	return &statuspb.Status{Code: int32(codes.Internal), Message: err.Error()}
}

func (e *Envoy) handleSotw(resp *discoverygrpc.DiscoveryResponse) {
	e.count(resp.TypeUrl, func(s *TypeStats) { s.Responses++ })
	t := e.types[resp.TypeUrl]
	if t == nil || !t.subscribed {
		return // no subscriber: Envoy logs and drops it
	}
	if len(e.names(t)) == 0 && !t.wildcard {
		// No watches left (grpc_mux_impl.cc): accept an empty response, otherwise
		// re-request without moving the version.
		t.nonce = resp.Nonce
		if len(resp.Resources) == 0 {
			t.version = resp.VersionInfo
			return
		}
		e.queue(t)
		return
	}
	e.pause(t)
	items, err := e.decodeSotw(resp)
	if err == nil {
		e.apply(t.typeURL, items, nil, true)
		t.version = resp.VersionInfo
	} else {
		t.errDetail = nackStatus(err)
		e.stats.LastNACK = err.Error()
	}
	t.nonce = resp.Nonce
	t.ackOwed = true
	t.pending = true
	e.resume(t)
}

func (e *Envoy) handleDelta(resp *discoverygrpc.DeltaDiscoveryResponse) {
	e.count(resp.TypeUrl, func(s *TypeStats) { s.Responses++ })
	t := e.types[resp.TypeUrl]
	if t == nil || !t.subscribed {
		return
	}
	e.pause(t)
	items, err := e.decodeDelta(t, resp)
	ack := deltaAck{nonce: resp.Nonce}
	if err == nil {
		e.apply(t.typeURL, items, resp.RemovedResources, false)
		want := e.names(t)
		for _, it := range items {
			if _, ok := want[it.name]; t.wildcard || ok {
				t.versions[it.name] = it.version
			}
		}
		for _, n := range resp.RemovedResources {
			delete(t.versions, n)
		}
	} else {
		ack.err = nackStatus(err)
		e.stats.LastNACK = err.Error()
	}
	t.acks = append(t.acks, ack)
	e.resume(t)
}

// apply hands accepted resources to the type's consumer. full is true for SotW, where
// a wildcard resource missing from the response is removed.
func (e *Envoy) apply(typeURL string, items []item, removed []string, full bool) {
	switch typeURL {
	case typeCluster:
		e.applyClusters(items, removed, full)
	case typeEndpoint:
		e.applyEndpoints(items, removed)
	case typeListener:
		e.applyListeners(items, removed, full)
	case typeRoute:
		e.applyRoutes(items)
	}
}
