package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/bulwarkmesh/bulwark/test/envoymodel"
)

// Resource types, in the order Envoy asks for them over ADS.
const (
	tCDS = iota
	tEDS
	tLDS
	tRDS
	numTypes
)

var typeURL = [numTypes]string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

var typeName = [numTypes]string{"clusters", "endpoints", "listeners", "routes"}

func typeIndex(url string) int {
	for i, u := range typeURL {
		if u == url {
			return i
		}
	}
	return -1
}

// Flavors and protocols the simulator speaks.
const (
	flavorEnvoy   = "envoy"
	flavorGRPC    = "grpc"
	protocolSotW  = "sotw"
	protocolDelta = "delta"
)

// fleetOptions shape the simulated proxies.
type fleetOptions struct {
	xdsAddr        string
	protocol       string
	flavor         string
	streamsPerConn int
	backoffBase    time.Duration
	backoffMax     time.Duration
	// grpcTargets are the listener names a proxyless client asks for.
	grpcTargets []string
	// nodePrefix makes node IDs unique across simulator runs.
	nodePrefix string
	// warming runs Envoy proxies as test/envoymodel instances (see
	// model.go); without it they ACK whatever arrives.
	warming bool
	// initialFetchTimeout is the models' initial_fetch_timeout where the
	// config source sets none; zero is Envoy's default (15 s).
	initialFetchTimeout time.Duration
	// recvHook, if set, sees every response a model receives before the
	// model does, on the model's receive loop (tests use it to hold some).
	recvHook func(p *proxy, msg any)
	// progress, if set, receives the counts of a long wait every
	// progressEvery (see progress.go).
	progress      func(format string, a ...any)
	progressEvery time.Duration
}

// useModel reports whether the proxies are envoymodel instances.
func (o fleetOptions) useModel() bool { return o.warming && o.flavor == flavorEnvoy }

// fleet is every simulated proxy and the connections they share.
type fleet struct {
	opt    fleetOptions
	parser *parser

	mu      sync.Mutex
	conns   []*grpc.ClientConn
	proxies []*proxy
	byID    map[string]*proxy // the warming client's interceptor finds proxies by node ID

	warm       atomic.Int64 // proxies warm on their current stream
	streams    atomic.Int64 // streams opened, all generations
	failures   atomic.Int64 // streams that ended with an error
	nacks      atomic.Int64 // NACKs sent (warming client only)
	lastChange atomic.Int64 // unix nanos of the last ACK of a changed version

	errMu     sync.Mutex
	streamErr map[string]int64 // why streams ended: gRPC code and message → count

	wg     sync.WaitGroup
	cancel context.CancelFunc
	ctx    context.Context
}

func newFleet(opt fleetOptions) *fleet {
	ctx, cancel := context.WithCancel(context.Background())
	return &fleet{opt: opt, parser: newParser(), ctx: ctx, cancel: cancel, byID: map[string]*proxy{}}
}

// dial opens one more shared gRPC connection. The connection backoff is
// short and jittered, as Envoy's is for its xDS cluster, so a restarted
// control plane is found again within a fraction of a second.
func (f *fleet) dial() (*grpc.ClientConn, error) {
	var watch []grpc.DialOption
	if f.opt.useModel() {
		watch = append(watch, grpc.WithStreamInterceptor(f.watchStream))
	}
	return grpc.NewClient(f.opt.xdsAddr, append(watch,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)),
		// Large windows, like Envoy's, so big responses are not throttled
		// by flow control on a busy connection.
		grpc.WithInitialWindowSize(4<<20),
		grpc.WithInitialConnWindowSize(16<<20),
	)...)
}

// add starts n more proxies spread over the given sources, round robin.
func (f *fleet) add(n int, sources []string) error {
	var models []*proxy
	defer func() {
		// Started without f.mu: a model's first request goes through the
		// interceptor, which looks the proxy up under f.mu.
		for _, p := range models {
			p.startModel()
		}
	}()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := 0; i < n; i++ {
		idx := len(f.proxies)
		if idx%f.opt.streamsPerConn == 0 {
			c, err := f.dial()
			if err != nil {
				return fmt.Errorf("dial %s: %w", f.opt.xdsAddr, err)
			}
			f.conns = append(f.conns, c)
		}
		p := &proxy{
			f:      f,
			id:     fmt.Sprintf("%s-%06d", f.opt.nodePrefix, idx),
			source: sources[idx%len(sources)],
			conn:   f.conns[len(f.conns)-1],
		}
		p.node = p.makeNode()
		f.proxies = append(f.proxies, p)
		if f.opt.useModel() {
			f.byID[p.id] = p
			models = append(models, p)
			continue
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			p.run(f.ctx)
		}()
	}
	return nil
}

// maxStreamErrors bounds the distinct reasons kept; the rest count as "other".
const maxStreamErrors = 10

// failed counts a stream that ended with an error, and why.
func (f *fleet) failed(err error) {
	f.failures.Add(1)
	key := "unknown"
	if err != nil {
		st := status.Convert(err)
		key = st.Code().String() + ": " + st.Message()
		if len(key) > 160 {
			key = key[:160] + "…"
		}
	}
	f.errMu.Lock()
	defer f.errMu.Unlock()
	if f.streamErr == nil {
		f.streamErr = map[string]int64{}
	}
	if _, ok := f.streamErr[key]; !ok && len(f.streamErr) >= maxStreamErrors {
		key = "other"
	}
	f.streamErr[key]++
}

// streamErrors returns why streams ended, with counts.
func (f *fleet) streamErrors() map[string]int64 {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	if len(f.streamErr) == 0 {
		return nil
	}
	out := make(map[string]int64, len(f.streamErr))
	for k, v := range f.streamErr {
		out[k] = v
	}
	return out
}

// all returns the proxies started so far.
func (f *fleet) all() []*proxy {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*proxy(nil), f.proxies...)
}

// waitWarm waits until n proxies are warm, or the timeout passes.
func (f *fleet) waitWarm(ctx context.Context, n int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	pt := f.reporter()
	for f.warm.Load() < int64(n) {
		pt.say("warming: %d/%d streams warm, %d stream failures, %.0f s", f.warm.Load(), n, f.failures.Load(), time.Since(start).Seconds())
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("%d of %d streams warm after %s (stream failures: %d)", f.warm.Load(), n, timeout, f.failures.Load())
		case <-t.C:
		}
	}
	return time.Since(start), nil
}

// close stops every stream and connection.
func (f *fleet) close() {
	f.cancel()
	for _, p := range f.all() {
		if p.model != nil {
			p.model.Close()
		}
	}
	f.wg.Wait()
	for _, c := range f.conns {
		c.Close()
	}
}

// proxy is one simulated Envoy or proxyless gRPC client.
type proxy struct {
	f      *fleet
	id     string
	source string
	conn   *grpc.ClientConn
	node   *corev3.Node

	mu  sync.Mutex
	gen int // stream generation: one more per reconnect
	// names: the names subscribed per type, kept across streams (nil with
	// wildcard). need: whether the type is subscribed on the current stream.
	names  [numTypes]nameSet
	need   [numTypes]bool
	acked  [numTypes]string // the last ACKed version per type
	ackGen [numTypes]int    // the generation of that ACK
	isWarm bool
	warmAt time.Time
	opened time.Time // when the current stream was opened
	// known and deltaRefs: delta only, what the proxy holds of the wildcard
	// types: versions (sent again as initial_resource_versions on a new
	// stream) and references.
	known     [numTypes]map[string]string
	deltaRefs map[string]refs
	measure   measurement

	// The warming client: the model, its reconnect backoff, and the delta
	// responses not yet ACKed (nonce → system version).
	model          *envoymodel.Envoy
	reconnectDelay time.Duration
	nonces         [numTypes][]pendingNonce
}

// measurement is a proxy's view of one change: the versions it had ACKed
// when the change was written, and when it ACKed different ones.
type measurement struct {
	active    bool
	base      [numTypes]string
	changedAt [numTypes]time.Time
	changedTo [numTypes]string
	// The warming client: a changed version was ACKed and the model has not
	// been seen all warm since (awaitWarm); when it was (warmAt); whether a
	// cluster or listener had warmed by timeout by then (byTimeout, over
	// baseTimeouts when the change was written).
	awaitWarm    bool
	warmAt       time.Time
	byTimeout    bool
	baseTimeouts int
}

func (p *proxy) makeNode() *corev3.Node {
	n := &corev3.Node{Id: p.id, Cluster: p.source}
	if p.f.opt.flavor == flavorGRPC {
		n.UserAgentName = "gRPC Go"
		n.UserAgentVersionType = &corev3.Node_UserAgentVersion{UserAgentVersion: grpc.Version}
		n.ClientFeatures = []string{"envoy.lb.does_not_support_overprovisioning", "xds.config.resource-in-sotw"}
	} else {
		n.UserAgentName = "envoy"
		n.UserAgentVersionType = &corev3.Node_UserAgentVersion{UserAgentVersion: "1.36.0"}
	}
	return n
}

// group is the simulator's name for the proxies that share config.
func (p *proxy) group() string { return p.f.opt.flavor + "/" + p.source }

// run keeps one stream open, reconnecting with exponential backoff and full
// jitter (so a fleet that lost its control plane does not come back as one
// thundering herd), until ctx ends.
func (p *proxy) run(ctx context.Context) {
	delay := p.f.opt.backoffBase
	for ctx.Err() == nil {
		p.f.streams.Add(1)
		var err error
		if p.f.opt.protocol == protocolDelta {
			err = p.runDelta(ctx)
		} else {
			err = p.runSotW(ctx)
		}
		if ctx.Err() != nil {
			return
		}
		p.f.failed(err)
		p.mu.Lock()
		wasWarm := p.isWarm
		p.mu.Unlock()
		if wasWarm {
			delay = p.f.opt.backoffBase // the stream had worked: start over
		}
		p.reset()
		_ = err
		sleep := time.Duration(rand.Int64N(int64(delay))) + time.Millisecond
		select {
		case <-ctx.Done():
			return
		case <-time.After(sleep):
		}
		delay = min(delay*2, p.f.opt.backoffMax)
	}
}

// begin starts a stream generation: nothing is ACKed on it yet.
func (p *proxy) begin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	p.opened = time.Now()
	if p.model != nil {
		// A model's stream needs what it asks for on it (see requested).
		p.need, p.nonces = [numTypes]bool{}, [numTypes][]pendingNonce{}
		return
	}
	for t := range numTypes {
		p.need[t] = p.wildcard(t) || len(p.names[t]) > 0
	}
	if p.f.opt.flavor == flavorGRPC {
		p.need[tLDS] = true
	}
}

// reset marks the proxy cold after its stream ended.
func (p *proxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isWarm {
		p.isWarm = false
		p.f.warm.Add(-1)
	}
}

// wildcard reports whether the proxy subscribes to every resource of a type.
func (p *proxy) wildcard(t int) bool {
	return p.f.opt.flavor == flavorEnvoy && (t == tCDS || t == tLDS)
}

// subscribe records the names of a type; it reports whether they changed.
func (p *proxy) subscribe(t int, names nameSet) (old nameSet, changed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old = p.names[t]
	if old.equal(names) {
		return old, false
	}
	p.names[t] = names
	if len(names) > 0 {
		p.need[t] = true
	}
	return old, true
}

func (p *proxy) subscribed(t int) nameSet {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.names[t]
}

// acked records an ACK sent for a version of a type.
func (p *proxy) recordAck(t int, version string) {
	now := time.Now()
	p.mu.Lock()
	p.acked[t], p.ackGen[t] = version, p.gen
	m := &p.measure
	changed := m.active && version != m.base[t]
	if changed {
		m.changedAt[t], m.changedTo[t] = now, version
		m.awaitWarm = p.model != nil
	}
	becameWarm := false
	if p.model == nil && !p.isWarm && p.warmLocked() {
		p.isWarm, p.warmAt, becameWarm = true, now, true
	}
	p.mu.Unlock()
	if becameWarm {
		p.f.warm.Add(1)
	}
	if changed {
		p.f.lastChange.Store(now.UnixNano())
	}
}

// warmLocked: every type the proxy subscribes to is ACKed on this stream.
func (p *proxy) warmLocked() bool {
	for t := range numTypes {
		if p.need[t] && p.ackGen[t] != p.gen {
			return false
		}
	}
	return true
}

// describe tells what a proxy is waiting for, for error messages.
func (p *proxy) describe() string {
	var warming string
	if p.model != nil { // before p.mu: the model calls in with its own lock held
		warming = fmt.Sprintf("warming clusters %v, listeners %v", p.model.WarmingClusters(), p.model.WarmingListeners())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var parts []string
	for t := range numTypes {
		state := "not subscribed"
		switch {
		case p.need[t] && p.ackGen[t] == p.gen:
			state = "ACKed " + p.acked[t]
		case p.need[t]:
			state = "waiting (last ACKed " + p.acked[t] + ")"
		}
		parts = append(parts, fmt.Sprintf("%s %s %d names", typeName[t], state, len(p.names[t])))
	}
	if warming != "" {
		parts = append(parts, warming)
	}
	return fmt.Sprintf("%s (%s, stream %d): %s", p.id, p.group(), p.gen, strings.Join(parts, "; "))
}
