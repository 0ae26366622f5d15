package main

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	"github.com/bulwarkmesh/bulwark/test/envoymodel"
)

// The warming client (--warming, the default for --flavor envoy) runs every
// simulated Envoy as a test/envoymodel instance: it subscribes, validates,
// ACKs or NACKs and warms clusters and listeners the way Envoy does, and it
// holds its CDS ACK while a changed cluster waits for its endpoints. The
// instances share the fleet's connections (Options.Conn); the simulator
// watches them from a stream interceptor on those connections, so a proxy
// costs no goroutine beyond the model's own: the interceptor sees every ACK
// on the wire (the version the proxy now runs) and, each time the model's
// receive loop comes back for the next response, whether everything it holds
// is warm.

// startModel starts the model of one proxy on its shared connection.
func (p *proxy) startModel() {
	mode := envoymodel.SotW
	if p.f.opt.protocol == protocolDelta {
		mode = envoymodel.Delta
	}
	p.model = envoymodel.New(p.f.opt.xdsAddr, envoymodel.Options{
		Mode: mode, NodeID: p.id, NodeCluster: p.source, Conn: p.conn,
		InitialFetchTimeout: p.f.opt.initialFetchTimeout,
	})
	p.reconnectDelay = p.f.opt.backoffBase
	if err := p.model.Start(); err != nil {
		// The stream could not be opened (the connection is not ready yet,
		// or the control plane is down): try again like any broken stream.
		p.streamEnded(err)
	}
}

// streamEnded reacts to the end of a model's stream: the proxy is cold
// until a new stream is warm, and it reconnects after a jittered backoff.
// It runs on the model's receive goroutine (or the one that failed to open
// a stream) and must not call the model itself: the reconnect runs later, on
// a timer of its own.
func (p *proxy) streamEnded(err error) {
	if p.f.ctx.Err() != nil {
		return
	}
	p.f.failed(err)
	p.mu.Lock()
	wasWarm := p.isWarm
	if wasWarm {
		p.reconnectDelay = p.f.opt.backoffBase // the stream had worked: start over
	}
	delay := p.reconnectDelay
	p.reconnectDelay = min(p.reconnectDelay*2, p.f.opt.backoffMax)
	p.mu.Unlock()
	p.reset()
	sleep := time.Duration(rand.Int64N(int64(delay))) + time.Millisecond
	time.AfterFunc(sleep, func() {
		if p.f.ctx.Err() != nil {
			return
		}
		if err := p.model.Reconnect(); err != nil {
			p.streamEnded(err)
		}
	})
}

// checkWarm runs when the model's receive loop asks for the next response,
// that is after it applied the last one, with the model unlocked. It marks
// the proxy warm on its stream (every type it asked for ACKed on it, nothing
// warming), and, during a measurement, the moment everything is warm again
// after it ACKed a changed version.
func (p *proxy) checkWarm() {
	p.mu.Lock()
	awaiting := p.measure.awaitWarm
	needStream := !p.isWarm && p.warmLocked()
	p.mu.Unlock()
	if !awaiting && !needStream {
		return
	}
	if !p.model.AllWarm() {
		return
	}
	var timeouts int
	if awaiting {
		st := p.model.Stats()
		timeouts = st.ClustersWarmedByTimeout + st.ListenersWarmedByTimeout
	}
	now := time.Now()
	becameWarm := false
	p.mu.Lock()
	if awaiting && p.measure.awaitWarm {
		p.measure.awaitWarm = false
		p.measure.warmAt = now
		p.measure.byTimeout = timeouts > p.measure.baseTimeouts
	}
	if !p.isWarm && p.warmLocked() {
		p.isWarm, p.warmAt, becameWarm = true, now, true
	}
	p.mu.Unlock()
	if becameWarm {
		p.f.warm.Add(1)
	}
	if awaiting {
		p.f.lastChange.Store(now.UnixNano())
	}
}

// warmedByTimeout returns how many of the model's clusters and listeners
// became active only because initial_fetch_timeout fired, so far.
func (p *proxy) warmedByTimeout() int {
	if p.model == nil {
		return 0
	}
	st := p.model.Stats()
	return st.ClustersWarmedByTimeout + st.ListenersWarmedByTimeout
}

// watchStream is the interceptor of the warming client's connections.
func (f *fleet) watchStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &watchedStream{ClientStream: cs, f: f}, nil
}

// watchedStream is one model stream as the simulator observes it. The proxy
// is known from the node of the first request (the model sends requests
// before its receive loop starts).
type watchedStream struct {
	grpc.ClientStream
	f *fleet
	p atomic.Pointer[proxy]
}

// pendingNonce is a delta response waiting for its ACK.
type pendingNonce struct{ nonce, version string }

func (s *watchedStream) proxyFor(id string) *proxy {
	if p := s.p.Load(); p != nil {
		return p
	}
	if id == "" {
		return nil
	}
	s.f.mu.Lock()
	p := s.f.byID[id]
	s.f.mu.Unlock()
	if p == nil {
		return nil
	}
	s.p.Store(p)
	s.f.streams.Add(1)
	p.begin()
	return p
}

// SendMsg runs with the model locked: it only records.
func (s *watchedStream) SendMsg(m any) error {
	if err := s.ClientStream.SendMsg(m); err != nil {
		return err
	}
	switch r := m.(type) {
	case *discoveryv3.DiscoveryRequest:
		p := s.proxyFor(r.GetNode().GetId())
		t := typeIndex(r.GetTypeUrl())
		if p == nil || t < 0 {
			return nil
		}
		p.requested(t)
		switch {
		case r.GetErrorDetail() != nil:
			s.f.nacks.Add(1)
		case r.GetResponseNonce() != "":
			p.recordAck(t, r.GetVersionInfo())
		}
	case *discoveryv3.DeltaDiscoveryRequest:
		p := s.proxyFor(r.GetNode().GetId())
		t := typeIndex(r.GetTypeUrl())
		if p == nil || t < 0 {
			return nil
		}
		p.requested(t)
		if r.GetResponseNonce() == "" {
			return nil
		}
		version, ok := p.takeNonce(t, r.GetResponseNonce())
		switch {
		case r.GetErrorDetail() != nil:
			s.f.nacks.Add(1)
		case ok:
			p.recordAck(t, version)
		}
	}
	return nil
}

// RecvMsg runs on the model's receive loop, with the model unlocked.
func (s *watchedStream) RecvMsg(m any) error {
	p := s.p.Load()
	if p != nil {
		p.checkWarm()
	}
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		if p != nil {
			p.streamEnded(err)
		}
		return err
	}
	if r, ok := m.(*discoveryv3.DeltaDiscoveryResponse); ok && p != nil {
		if t := typeIndex(r.GetTypeUrl()); t >= 0 {
			p.addNonce(t, r.GetNonce(), r.GetSystemVersionInfo())
		}
	}
	if h := s.f.opt.recvHook; h != nil && p != nil {
		h(p, m)
	}
	return nil
}

// requested notes that the proxy subscribes to type t on this stream: it is
// warm only once that type is ACKed on it too.
func (p *proxy) requested(t int) {
	p.mu.Lock()
	p.need[t] = true
	p.mu.Unlock()
}

// addNonce remembers a delta response until its ACK. The model ACKs every
// delta response of a type in order, so the list stays short.
func (p *proxy) addNonce(t int, nonce, version string) {
	p.mu.Lock()
	if len(p.nonces[t]) >= 64 {
		p.nonces[t] = p.nonces[t][1:]
	}
	p.nonces[t] = append(p.nonces[t], pendingNonce{nonce, version})
	p.mu.Unlock()
}

func (p *proxy) takeNonce(t int, nonce string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, n := range p.nonces[t] {
		if n.nonce == nonce {
			p.nonces[t] = p.nonces[t][i+1:]
			return n.version, true
		}
	}
	return "", false
}

// responseType is the type URL of a SotW or delta response.
func responseType(msg any) string {
	switch r := msg.(type) {
	case *discoveryv3.DiscoveryResponse:
		return r.GetTypeUrl()
	case *discoveryv3.DeltaDiscoveryResponse:
		return r.GetTypeUrl()
	}
	return ""
}
