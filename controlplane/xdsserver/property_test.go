package xdsserver

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/bulwarkmesh/bulwark/controlplane/internal/meshtest"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver/seal"
)

// The property test drives a real xDS server over real gRPC streams, state
// of the world and delta, with request sequences drawn from a seeded
// source: random type URLs (now and then one that is not served), random
// resource names (some that do not exist), versions and nonces that are
// right, stale or empty, NACKs, reconnects that resume with the accepted
// version or come back as a new process, and publications that move the
// versions. After every step of a state-of-the-world client the test waits
// until the server has acted on it, so that each response is known to
// answer the stream's current watch, and checks:
//
//   - every wait ends within propWait, and SetSnapshot under Pause returns;
//   - a response carries the group's current version and the resources the
//     request named (all of them for no names), and only a stream with a
//     pending accepted request is answered;
//   - a version a node rejected for names N is not sent again to that node
//     while the group still has it, for a request that asks for nothing
//     beyond N (the exceptions of guard.go: a request for more names is
//     answered; a request with no version on a stream that rejected nothing
//     is answered);
//   - at quiescence every pending request is held by the cache;
//   - at the end, a request with a stale version is answered with the
//     current version (unless the node rejected that version), and its ACK
//     is held, not answered again (an Envoy's EDS request is owed one answer
//     after a CDS response, see Cache.Sent);
//   - delta streams converge to the current resources and then stay quiet;
//   - Cache.Rejections stays within the (node, type) pairs that NACKed, and
//     after a new publication and Forget, within what still applies;
//   - Tracker.Proxies lists exactly the nodes with open streams.
//
// Requests are told apart on the server by a "probe" field in the node
// metadata, which Envoy sends on every request by default; nothing in
// Bulwark reads it.

const (
	propWait  = 20 * time.Second
	propSteps = 300
)

var propTypes = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

func TestPropertyRandomRequestSequences(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 17, 2026} {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) { runXDSProperty(t, seed, propSteps) })
	}
}

func FuzzXDSServer(f *testing.F) {
	for _, seed := range []uint64{5, 99, 31337} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed uint64) { runXDSProperty(t, seed, 150) })
}

type propGroup struct {
	key  string
	snap *cachev3.Snapshot
	// seen: type URL → every version the group had.
	seen map[string][]string
}

// propRejection is what the property requires of one node and type: the
// version it rejected while the group has had that version continuously,
// and for which names (wildcard: all).
type propRejection struct {
	version  string
	wildcard bool
	names    map[string]bool
	streams  map[int]bool
}

type propWorld struct {
	t     *testing.T
	env   *xdsEnv
	cc    *grpc.ClientConn
	rng   *rand.Rand
	snaps map[int]*cachev3.Snapshot
	names map[string][]string // type URL → names to draw from

	groups map[string]*propGroup
	sotw   []*sotwClient
	delta  []*deltaClient

	sentMu sync.Mutex
	sent   map[string]int // node → responses sent (Tracker.SetOnSent)

	recs         map[[2]string]*propRejection // node, type → what must stay held
	latestNack   map[[2]string]string         // node, type → version of its last NACK
	everRejected map[[3]string]bool           // node, type, version
	nackStreams  map[[2]string]map[int]bool

	streamSeq int
	tagSeq    int
	trace     []string
	why       string // set by a wait's condition, for its failure message
	wg        sync.WaitGroup
}

type sotwRecv struct {
	resp *discoveryv3.DiscoveryResponse
	err  error
}

type sotwSub struct {
	legacy, wildcard bool
	names            map[string]bool
}

func newSotwSub(names []string) sotwSub {
	s := sotwSub{legacy: true, wildcard: len(names) == 0, names: map[string]bool{}}
	s.set(names)
	return s
}

// set mirrors go-control-plane's Subscription.SetResourceSubscription
// (legacy wildcard active, no explicit "*").
func (s *sotwSub) set(names []string) {
	if s.legacy {
		if len(names) == 0 {
			return
		}
		s.legacy = false
	}
	s.wildcard = false
	s.names = map[string]bool{}
	for _, n := range names {
		s.names[n] = true
	}
}

type sotwType struct {
	started     bool
	serverNonce string // the nonce the server expects: "" after an accepted request
	last        *discoveryv3.DiscoveryResponse
	nonces      []string
	watch       bool // an accepted request waits for its answer
	req         *discoveryv3.DiscoveryRequest
	sub         sotwSub
}

type sotwClient struct {
	w                 *propWorld
	idx               int
	id, agent, group  string
	envoy             bool
	alive, registered bool
	streamNo          int
	cancel            context.CancelFunc
	s                 discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	ch                chan sotwRecv
	ended             error
	received          int
	owedEDS           bool
	types             map[string]*sotwType
	accepted          map[string]string // survives reconnects
}

type deltaRecv struct {
	resp *discoveryv3.DeltaDiscoveryResponse
	err  error
}

type deltaType struct {
	started  bool
	wildcard bool
	names    map[string]bool
	known    map[string]string // name → encoded resource; survives reconnects
	versions map[string]string // name → version received
	nonce    string
	unacked  bool // a response arrived after the last request of the type
}

type deltaClient struct {
	w                 *propWorld
	id, agent, group  string
	alive, registered bool
	cancel            context.CancelFunc
	s                 discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	ch                chan deltaRecv
	ended             error
	responses         int
	types             map[string]*deltaType
}

func runXDSProperty(t *testing.T, seed uint64, steps int) {
	w := &propWorld{
		t: t, env: newXDSEnv(t), rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		snaps: map[int]*cachev3.Snapshot{}, names: map[string][]string{}, groups: map[string]*propGroup{},
		sent: map[string]int{}, recs: map[[2]string]*propRejection{}, latestNack: map[[2]string]string{},
		everRejected: map[[3]string]bool{}, nackStreams: map[[2]string]map[int]bool{},
	}
	for n := 1; n <= 5; n++ {
		snap, _, err := seal.NewSnapshot(meshtest.RenderMesh(t, n))
		require.NoError(t, err)
		w.snaps[n] = snap
	}
	for _, typ := range propTypes {
		seen := map[string]bool{}
		for n := 1; n <= 4; n++ {
			for name := range w.snaps[n].GetResourcesAndTTL(typ) {
				seen[name] = true
			}
		}
		w.names[typ] = append(slices.Sorted(maps.Keys(seen)), "no-such-"+shortType[typ])
	}
	w.env.tracker.SetOnSent(func(node, _, _ string) {
		w.sentMu.Lock()
		w.sent[node]++
		w.sentMu.Unlock()
	})
	cc, err := grpc.NewClient(w.env.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	w.cc = cc
	t.Cleanup(func() {
		for _, c := range w.sotw {
			if c.cancel != nil {
				c.cancel()
			}
		}
		for _, d := range w.delta {
			if d.cancel != nil {
				d.cancel()
			}
		}
		w.wg.Wait()
		cc.Close()
		if t.Failed() {
			t.Logf("seed %d, last steps:\n%s", seed, strings.Join(w.trace, "\n"))
		}
	})

	envoyGroup := w.env.cache.hash.ID(&corev3.Node{Cluster: "svc-00000", UserAgentName: "envoy"})
	grpcGroup := w.env.cache.hash.ID(&corev3.Node{Cluster: "svc-00000", UserAgentName: "grpc-go/1.85"})
	for _, key := range []string{envoyGroup, grpcGroup} {
		w.groups[key] = &propGroup{key: key, seen: map[string][]string{}}
		if w.rng.IntN(3) > 0 {
			w.publish(key, 1+w.rng.IntN(4))
		}
	}
	for i, agent := range []string{"envoy", "envoy", "grpc-go/1.85"} {
		c := &sotwClient{w: w, idx: i, id: fmt.Sprintf("sotw-%d", i), agent: agent, envoy: agent == "envoy", accepted: map[string]string{}}
		c.group = w.env.cache.hash.ID(c.node(""))
		w.sotw = append(w.sotw, c)
		c.open()
	}
	for i, agent := range []string{"envoy", "grpc-go/1.85"} {
		d := &deltaClient{w: w, id: fmt.Sprintf("delta-%d", i), agent: agent, types: map[string]*deltaType{}}
		d.group = w.env.cache.hash.ID(&corev3.Node{Cluster: "svc-00000", UserAgentName: agent})
		w.delta = append(w.delta, d)
		d.open()
	}

	for step := range steps {
		w.logf("step %d", step)
		w.randomStep()
		w.checkRejectionBound()
		if t.Failed() {
			return
		}
	}
	w.finish()
}

func (w *propWorld) logf(format string, args ...any) {
	w.trace = append(w.trace, fmt.Sprintf(format, args...))
	if len(w.trace) > 60 {
		w.trace = w.trace[len(w.trace)-60:]
	}
}

func (w *propWorld) randomStep() {
	r := w.rng.IntN(100)
	switch {
	case r < 55:
		c := w.sotw[w.rng.IntN(len(w.sotw))]
		if !c.alive {
			c.open()
			return
		}
		c.randomRequest(propTypes[w.rng.IntN(len(propTypes))])
	case r < 70:
		d := w.delta[w.rng.IntN(len(w.delta))]
		if !d.alive {
			d.open()
			return
		}
		d.randomRequest()
	case r < 80:
		keys := slices.Sorted(maps.Keys(w.groups))
		w.publish(keys[w.rng.IntN(len(keys))], 1+w.rng.IntN(4))
	case r < 86:
		c := w.sotw[w.rng.IntN(len(w.sotw))]
		if c.alive {
			c.close()
		}
		c.open()
	case r < 89:
		if c := w.sotw[w.rng.IntN(len(w.sotw))]; c.alive {
			c.close()
		}
	case r < 92:
		if c := w.sotw[w.rng.IntN(len(w.sotw))]; c.alive {
			c.unknownType()
		}
	case r < 95:
		d := w.delta[w.rng.IntN(len(w.delta))]
		if d.alive && w.rng.IntN(2) == 0 {
			d.unknownType()
			return
		}
		if d.alive {
			d.close()
		}
		d.open()
	default:
		w.env.cache.Forget()
		w.logf("Forget")
	}
}

// ---- waiting ----

// waitFor drains every stream and returns once cond holds; it fails the test
// after propWait.
func (w *propWorld) waitFor(what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(propWait)
	for {
		w.drain()
		if w.t.Failed() {
			w.t.FailNow()
		}
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("not within %v: %s %s", propWait, what, w.why)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func (w *propWorld) drain() {
	for _, c := range w.sotw {
		c.drain()
	}
	for _, d := range w.delta {
		d.drain()
	}
}

func (c *sotwClient) drain() {
	for c.ch != nil {
		select {
		case r, ok := <-c.ch:
			switch {
			case !ok:
				c.ch = nil
			case r.err != nil:
				c.ended = r.err
			default:
				c.handle(r.resp)
			}
		default:
			return
		}
	}
}

func (d *deltaClient) drain() {
	for d.ch != nil {
		select {
		case r, ok := <-d.ch:
			switch {
			case !ok:
				d.ch = nil
			case r.err != nil:
				d.ended = r.err
			default:
				d.handle(r.resp)
			}
		default:
			return
		}
	}
}

func (w *propWorld) sentTo(node string) int {
	w.sentMu.Lock()
	defer w.sentMu.Unlock()
	return w.sent[node]
}

// quiet reports whether every state-of-the-world client has received what
// the server sent it.
func (w *propWorld) quiet() bool {
	for _, c := range w.sotw {
		if c.received != w.sentTo(c.id) {
			return false
		}
	}
	return true
}

// parked returns the probe tags of the held state-of-the-world watches.
func (w *propWorld) parked() map[string]bool {
	g := w.env.cache
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]bool{}
	for _, ws := range g.watches {
		for sw := range ws {
			out[probeOf(sw.req.GetNode())] = true
		}
	}
	return out
}

// noted returns the probe tags of the requests noted and not (yet) watched.
func (w *propWorld) noted() map[string]bool {
	g := w.env.cache
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]bool{}
	for req := range g.streamOf {
		out[probeOf(req.GetNode())] = true
	}
	return out
}

func probeOf(n *corev3.Node) string {
	return n.GetMetadata().GetFields()["probe"].GetStringValue()
}

// settle waits until the state-of-the-world clients are quiet and checks
// that every pending request is held.
func (w *propWorld) settle() {
	w.t.Helper()
	w.waitFor("every response sent is received", w.quiet)
	parked := w.parked()
	for _, c := range w.sotw {
		if !c.alive {
			continue
		}
		for typ, st := range c.types {
			if st.watch && !parked[probeOf(st.req.GetNode())] {
				w.t.Fatalf("%s: the %s request %s is neither answered nor held", c.id, shortType[typ], probeOf(st.req.GetNode()))
			}
		}
	}
}

// ---- publications and rejections ----

func (w *propWorld) publish(key string, n int) {
	w.t.Helper()
	g := w.groups[key]
	snap := w.snaps[n]
	before := w.parked()
	done := make(chan error, 1)
	go func() {
		resume := w.env.cache.Pause()
		defer resume()
		done <- w.env.cache.SetSnapshot(context.Background(), key, snap)
	}()
	select {
	case err := <-done:
		require.NoError(w.t, err)
	case <-time.After(propWait):
		w.t.Fatalf("SetSnapshot of %s under Pause did not return within %v", key, propWait)
	}
	w.logf("publish %s n=%d", key, n)
	for _, typ := range propTypes {
		v := snap.GetVersion(typ)
		if g.snap == nil || g.snap.GetVersion(typ) != v {
			g.seen[typ] = append(g.seen[typ], v)
			for k := range w.recs {
				if k[1] == typ && w.groupOfNode(k[0]) == key {
					delete(w.recs, k) // the group moved on: nothing left to hold
				}
			}
		}
	}
	g.snap = snap
	after := w.parked()
	// Every watch the publication took must be answered.
	owed := map[*sotwType]bool{}
	for tag := range before {
		if after[tag] {
			continue
		}
		for _, c := range w.sotw {
			for _, st := range c.types {
				if st.watch && probeOf(st.req.GetNode()) == tag {
					owed[st] = true
				}
			}
		}
	}
	w.waitFor("the publication's answers arrive", func() bool {
		for st := range owed {
			if st.watch {
				return false
			}
		}
		return true
	})
	w.settle()
}

func (w *propWorld) groupOfNode(id string) string {
	for _, c := range w.sotw {
		if c.id == id {
			return c.group
		}
	}
	return ""
}

func (w *propWorld) checkRejectionBound() {
	if n := w.env.cache.Rejections(); n > len(w.latestNack) {
		w.t.Fatalf("%d rejections remembered, only %d (node, type) pairs NACKed", n, len(w.latestNack))
	}
}

// ---- state-of-the-world clients ----

func (c *sotwClient) node(tag string) *corev3.Node {
	n := &corev3.Node{Id: c.id, Cluster: "svc-00000", UserAgentName: c.agent}
	if tag != "" {
		md, err := structpb.NewStruct(map[string]any{"probe": tag})
		if err != nil {
			panic(err)
		}
		n.Metadata = md
	}
	return n
}

func (c *sotwClient) open() {
	w := c.w
	ctx, cancel := context.WithCancel(context.Background())
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(w.cc).StreamAggregatedResources(ctx)
	require.NoError(w.t, err)
	w.streamSeq++
	c.streamNo, c.s, c.cancel, c.alive, c.registered, c.ended = w.streamSeq, s, cancel, true, false, nil
	c.types, c.owedEDS = map[string]*sotwType{}, false
	ch := make(chan sotwRecv, 16)
	c.ch = ch
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(ch)
		for {
			r, err := s.Recv()
			select {
			case ch <- sotwRecv{r, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	fresh := w.rng.IntN(4) == 0
	if fresh {
		c.accepted = map[string]string{} // a new process: nothing accepted
	}
	typ := propTypes[w.rng.IntN(len(propTypes))]
	w.logf("%s opens stream %d (new process %v)", c.id, c.streamNo, fresh)
	c.send(typ, w.randomNames(typ), c.accepted[typ], "", false)
}

func (c *sotwClient) close() {
	w := c.w
	w.settle()
	c.cancel()
	w.logf("%s closes stream %d", c.id, c.streamNo)
	w.waitFor("the stream's reader ends", func() bool { return c.ch == nil })
	c.alive = false
	w.checkProxies()
}

func (c *sotwClient) unknownType() {
	w := c.w
	typ := fmt.Sprintf("type.googleapis.com/bulwark.test.Unknown%d", w.rng.IntN(3))
	w.logf("%s asks for %s", c.id, typ)
	require.NoError(w.t, c.s.Send(&discoveryv3.DiscoveryRequest{Node: c.node(""), TypeUrl: typ}))
	w.waitFor("the stream with an unknown type ends", func() bool { return c.ch == nil })
	if status.Code(c.ended) != codes.InvalidArgument {
		w.t.Fatalf("%s: unknown type URL ended the stream with %v, want InvalidArgument", c.id, c.ended)
	}
	c.cancel()
	c.alive = false
	w.checkProxies()
}

func (w *propWorld) randomNames(typ string) []string {
	if w.rng.IntN(10) < 3 {
		return nil
	}
	var out []string
	for _, n := range w.names[typ] {
		if w.rng.IntN(2) == 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		out = append(out, w.names[typ][w.rng.IntN(len(w.names[typ]))])
	}
	return out
}

func (c *sotwClient) randomRequest(typ string) {
	w := c.w
	st := c.types[typ]
	names := w.randomNames(typ)
	if st != nil && st.started && w.rng.IntN(3) > 0 {
		names = st.req.GetResourceNames() // most requests keep the subscription
	}
	if st != nil && st.last != nil {
		switch r := w.rng.IntN(10); {
		case r < 4: // ACK
			c.send(typ, names, st.last.GetVersionInfo(), st.last.GetNonce(), false)
			return
		case r < 6: // NACK, with the version accepted before
			c.send(typ, names, c.accepted[typ], st.last.GetNonce(), true)
			return
		}
	}
	version := c.accepted[typ]
	switch r := w.rng.IntN(10); {
	case r < 2:
		version = ""
	case r < 4:
		if seen := w.groups[c.group].seen[typ]; len(seen) > 0 {
			version = seen[w.rng.IntN(len(seen))]
		}
	case r < 5:
		version = "bogus"
	}
	nonce := ""
	if st != nil && st.last != nil {
		nonce = st.last.GetNonce()
	}
	switch r := w.rng.IntN(10); {
	case r < 2:
		nonce = ""
	case r < 4 && st != nil && len(st.nonces) > 0:
		nonce = st.nonces[w.rng.IntN(len(st.nonces))]
	case r < 5:
		nonce = "12345"
	}
	c.send(typ, names, version, nonce, false)
}

// send sends one request and waits until the server has acted on it.
func (c *sotwClient) send(typ string, names []string, version, nonce string, nack bool) {
	w := c.w
	w.t.Helper()
	w.settle()
	w.tagSeq++
	tag := fmt.Sprintf("%s#%d", c.id, w.tagSeq)
	req := &discoveryv3.DiscoveryRequest{Node: c.node(tag), TypeUrl: typ, ResourceNames: names, VersionInfo: version, ResponseNonce: nonce}
	if nack {
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: "rejected by the property test"}
	}
	st := c.types[typ]
	if st == nil {
		st = &sotwType{}
		c.types[typ] = st
	}
	accepted := !st.started || st.serverNonce == "" || nonce == st.serverNonce
	w.logf("%s %s %s names=%v version=%q nonce=%q nack=%v accepted=%v", c.id, tag, shortType[typ], names, version, nonce, nack, accepted)

	key := [2]string{c.id, typ}
	if st.last != nil && nonce == st.last.GetNonce() {
		if nack {
			v := st.last.GetVersionInfo()
			w.latestNack[key] = v
			w.everRejected[[3]string{c.id, typ, v}] = true
			if w.nackStreams[key] == nil {
				w.nackStreams[key] = map[int]bool{}
			}
			w.nackStreams[key][c.streamNo] = true
			if g := w.groups[c.group]; g.snap != nil && g.snap.GetVersion(typ) == v {
				r := w.recs[key]
				if r == nil || r.version != v {
					r = &propRejection{version: v, names: map[string]bool{}, streams: map[int]bool{}}
					w.recs[key] = r
				}
				if len(names) == 0 {
					r.wildcard = true
				}
				for _, n := range names {
					r.names[n] = true
				}
				r.streams[c.streamNo] = true
			}
		} else if version == st.last.GetVersionInfo() {
			c.accepted[typ] = version
		}
	}
	if err := c.s.Send(req); err != nil {
		w.t.Fatalf("%s: send: %v", c.id, err)
	}
	c.registered = true
	if !accepted {
		w.waitFor("the stale request is seen", func() bool { return w.noted()[tag] })
		w.settle()
		return
	}
	if st.started {
		st.sub.set(names)
	} else {
		st.sub = newSotwSub(names)
	}
	st.started, st.serverNonce, st.watch, st.req = true, "", true, req
	w.waitFor("the request is answered or held", func() bool { return !st.watch || w.parked()[tag] })
	w.settle()
}

// handle checks and records one response.
func (c *sotwClient) handle(resp *discoveryv3.DiscoveryResponse) {
	w := c.w
	c.received++
	typ := resp.GetTypeUrl()
	st := c.types[typ]
	if st == nil || !st.watch {
		w.t.Errorf("%s: %s version %s sent with no request pending", c.id, shortType[typ], resp.GetVersionInfo())
		return
	}
	st.watch = false
	version := resp.GetVersionInfo()
	w.logf("%s <- %s version %s nonce %s (%d resources)", c.id, shortType[typ], version, resp.GetNonce(), len(resp.GetResources()))
	g := w.groups[c.group]
	if g.snap == nil || g.snap.GetVersion(typ) != version {
		w.t.Errorf("%s: %s version %s sent, the group has no such version", c.id, shortType[typ], version)
		return
	}
	resources := g.snap.GetResourcesAndTTL(typ)
	want := map[string]bool{}
	if len(st.req.GetResourceNames()) == 0 {
		for n := range resources {
			want[n] = true
		}
	} else {
		for _, n := range st.req.GetResourceNames() {
			if _, ok := resources[n]; ok {
				want[n] = true
			}
		}
	}
	got := map[string]bool{}
	for _, a := range resp.GetResources() {
		got[resourceName(w.t, a)] = true
	}
	if !maps.Equal(got, want) {
		w.t.Errorf("%s: %s response has %v, the request %v asks for %v", c.id, shortType[typ], slices.Sorted(maps.Keys(got)), st.req.GetResourceNames(), slices.Sorted(maps.Keys(want)))
	}
	key := [2]string{c.id, typ}
	if r := w.recs[key]; r != nil && r.version == version && c.mustHold(st, r, resources) {
		w.t.Errorf("%s resent rejected %s version %s on stream %d: request %s names=%v version=%q; rejected for wildcard=%v names=%v on streams %v",
			c.id, shortType[typ], version, c.streamNo, probeOf(st.req.GetNode()), st.req.GetResourceNames(), st.req.GetVersionInfo(),
			r.wildcard, slices.Sorted(maps.Keys(r.names)), slices.Sorted(maps.Keys(r.streams)))
	}
	st.last = resp
	st.nonces = append(st.nonces, resp.GetNonce())
	st.serverNonce = resp.GetNonce()
	if c.envoy {
		switch typ {
		case resourcev3.ClusterType:
			c.owedEDS = true
		case resourcev3.EndpointType:
			c.owedEDS = false
		}
	}
}

// mustHold reports whether the property forbids answering the stream's
// request with the rejected version.
func (c *sotwClient) mustHold(st *sotwType, r *propRejection, resources map[string]types.ResourceWithTTL) bool {
	if st.req.GetVersionInfo() == "" && !r.streams[c.streamNo] {
		return false // a new process has nothing to keep
	}
	if st.req.GetVersionInfo() == "" && len(c.w.nackStreams[[2]string{c.id, st.req.GetTypeUrl()}]) > maxRejectingStreams {
		return false // past the streams remembered per rejection
	}
	// A rejection for every name holds, whatever lists of names the node
	// also rejected the version for.
	if r.wildcard {
		return true
	}
	if st.sub.wildcard {
		return false
	}
	for n := range st.sub.names {
		if _, ok := resources[n]; ok && !r.names[n] {
			return false // asks for more than was rejected
		}
	}
	return true
}

func resourceName(t *testing.T, a *anypb.Any) string {
	m, err := a.UnmarshalNew()
	require.NoError(t, err)
	return cachev3.GetResourceName(m)
}

// ---- delta clients ----

func (d *deltaClient) open() {
	w := d.w
	ctx, cancel := context.WithCancel(context.Background())
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(w.cc).DeltaAggregatedResources(ctx)
	require.NoError(w.t, err)
	d.s, d.cancel, d.alive, d.registered, d.ended = s, cancel, true, false, nil
	ch := make(chan deltaRecv, 64)
	d.ch = ch
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer close(ch)
		for {
			r, err := s.Recv()
			select {
			case ch <- deltaRecv{r, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	w.logf("%s opens a delta stream", d.id)
	// Resume every type it had, with the versions it has.
	for _, typ := range slices.Sorted(maps.Keys(d.types)) {
		dt := d.types[typ]
		dt.started, dt.unacked, dt.nonce = false, false, ""
		var names []string
		if !dt.wildcard {
			names = slices.Sorted(maps.Keys(dt.names))
		}
		d.first(typ, names)
	}
	if len(d.types) == 0 {
		typ := propTypes[w.rng.IntN(len(propTypes))]
		d.first(typ, w.randomNames(typ))
	}
}

func (d *deltaClient) first(typ string, names []string) {
	dt := d.types[typ]
	if dt == nil {
		dt = &deltaType{known: map[string]string{}, versions: map[string]string{}}
		d.types[typ] = dt
	}
	dt.started, dt.wildcard, dt.names = true, len(names) == 0, map[string]bool{}
	for _, n := range names {
		dt.names[n] = true
	}
	for n := range dt.known {
		if !dt.wildcard && !dt.names[n] {
			delete(dt.known, n)
			delete(dt.versions, n)
		}
	}
	d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResourceNamesSubscribe: names, InitialResourceVersions: maps.Clone(dt.versions)})
}

func (d *deltaClient) send(req *discoveryv3.DeltaDiscoveryRequest) {
	w := d.w
	w.drain()
	req.Node = &corev3.Node{Id: d.id, Cluster: "svc-00000", UserAgentName: d.agent}
	if dt := d.types[req.GetTypeUrl()]; dt != nil {
		dt.unacked = false
	}
	w.logf("%s delta %s sub=%v unsub=%v nonce=%q nack=%v", d.id, shortType[req.GetTypeUrl()], req.GetResourceNamesSubscribe(), req.GetResourceNamesUnsubscribe(), req.GetResponseNonce(), req.GetErrorDetail() != nil)
	if err := d.s.Send(req); err != nil {
		w.t.Fatalf("%s: delta send: %v", d.id, err)
	}
	d.registered = true
}

func (d *deltaClient) randomRequest() {
	w := d.w
	w.drain()
	typ := propTypes[w.rng.IntN(len(propTypes))]
	dt := d.types[typ]
	if dt == nil || !dt.started {
		d.first(typ, w.randomNames(typ))
		return
	}
	switch r := w.rng.IntN(10); {
	case r < 4: // ACK
		d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: dt.nonce})
	case r < 5: // NACK
		d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: dt.nonce, ErrorDetail: &statuspb.Status{Message: "rejected by the property test"}})
	case r < 8 && !dt.wildcard: // subscribe to more
		names := w.randomNames(typ)
		for _, n := range names {
			dt.names[n] = true
		}
		d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: dt.nonce, ResourceNamesSubscribe: names})
	case !dt.wildcard && len(dt.names) > 1: // unsubscribe
		var gone []string
		for _, n := range slices.Sorted(maps.Keys(dt.names)) {
			if w.rng.IntN(2) == 0 && len(gone) < len(dt.names)-1 {
				gone = append(gone, n)
			}
		}
		for _, n := range gone {
			delete(dt.names, n)
			delete(dt.known, n)
			delete(dt.versions, n)
		}
		d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: dt.nonce, ResourceNamesUnsubscribe: gone})
	default:
		d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: dt.nonce})
	}
}

func (d *deltaClient) handle(resp *discoveryv3.DeltaDiscoveryResponse) {
	d.responses++
	dt := d.types[resp.GetTypeUrl()]
	if dt == nil {
		d.w.t.Errorf("%s: delta %s response for a type never asked for", d.id, resp.GetTypeUrl())
		return
	}
	d.w.logf("%s <- delta %s nonce %s: %d resources, %d removed", d.id, shortType[resp.GetTypeUrl()], resp.GetNonce(), len(resp.GetResources()), len(resp.GetRemovedResources()))
	for _, r := range resp.GetResources() {
		if dt.wildcard || dt.names[r.GetName()] {
			dt.known[r.GetName()] = string(r.GetResource().GetValue())
			dt.versions[r.GetName()] = r.GetVersion()
		}
	}
	for _, n := range resp.GetRemovedResources() {
		delete(dt.known, n)
		delete(dt.versions, n)
	}
	dt.nonce, dt.unacked = resp.GetNonce(), true
}

func (d *deltaClient) close() {
	w := d.w
	d.cancel()
	w.waitFor("the delta stream's reader ends", func() bool { return d.ch == nil })
	d.alive = false
	w.logf("%s closes its delta stream", d.id)
	w.checkProxies()
}

func (d *deltaClient) unknownType() {
	w := d.w
	typ := fmt.Sprintf("type.googleapis.com/bulwark.test.Unknown%d", w.rng.IntN(3))
	w.logf("%s delta asks for %s", d.id, typ)
	require.NoError(w.t, d.s.Send(&discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: d.id, Cluster: "svc-00000", UserAgentName: d.agent}, TypeUrl: typ}))
	w.waitFor("the delta stream with an unknown type ends", func() bool { return d.ch == nil })
	if status.Code(d.ended) != codes.InvalidArgument {
		w.t.Fatalf("%s: unknown type URL ended the delta stream with %v, want InvalidArgument", d.id, d.ended)
	}
	d.cancel()
	d.alive = false
	w.checkProxies()
}

// ---- checks at the end ----

func (w *propWorld) checkProxies() {
	w.t.Helper()
	want := []string{}
	for _, c := range w.sotw {
		if c.alive && c.registered {
			want = append(want, c.id)
		}
	}
	for _, d := range w.delta {
		if d.alive && d.registered {
			want = append(want, d.id)
		}
	}
	sort.Strings(want)
	var got []string
	w.waitFor(fmt.Sprintf("the tracker lists exactly %v", want), func() bool {
		got = got[:0]
		for _, p := range w.env.tracker.Proxies() {
			got = append(got, p.ID)
		}
		return slices.Equal(got, want)
	})
}

func (w *propWorld) finish() {
	t := w.t
	w.logf("final phase")
	for _, key := range slices.Sorted(maps.Keys(w.groups)) {
		if w.groups[key].snap == nil {
			w.publish(key, 1+w.rng.IntN(4))
		}
	}
	w.settle()

	// Liveness: a stale version is answered with the current one, and the
	// ACK of that answer is held.
	for _, c := range w.sotw {
		if !c.alive {
			c.open()
		}
		g := w.groups[c.group]
		for _, i := range w.rng.Perm(len(propTypes)) {
			typ := propTypes[i]
			cur := g.snap.GetVersion(typ)
			st := c.types[typ]
			nonce := ""
			if st != nil && st.last != nil {
				nonce = st.last.GetNonce()
			}
			if st != nil && st.started && st.serverNonce == "" {
				nonce = "" // any nonce is current for a held watch
			}
			names := existingNames(w, g.snap, typ)
			c.send(typ, names, "stale-version", nonce, false)
			st = c.types[typ]
			rejected := w.everRejected[[3]string{c.id, typ, cur}]
			if st.watch {
				if !rejected {
					t.Fatalf("%s: a %s request with a stale version is held; the group has %s, which %s never rejected", c.id, shortType[typ], cur, c.id)
				}
				continue
			}
			// The answer's ACK must wait.
			owed := c.envoy && typ == resourcev3.EndpointType && c.owedEDS
			for range 2 {
				c.send(typ, names, st.last.GetVersionInfo(), st.last.GetNonce(), false)
				if !st.watch && !owed {
					t.Fatalf("%s: the ACK of %s version %s was answered again", c.id, shortType[typ], st.last.GetVersionInfo())
				}
				if st.watch {
					break
				}
				owed = false
			}
			if !st.watch {
				t.Fatalf("%s: %s ACKs keep being answered", c.id, shortType[typ])
			}
		}
	}
	// An Envoy sent CDS after its last EDS answer is owed one EDS answer:
	// its next EDS request is answered though its version is current (see
	// Cache.Sent), and the ACK of that answer is held.
	for _, c := range w.sotw {
		st := c.types[resourcev3.EndpointType]
		if !c.envoy || !c.owedEDS || st == nil || st.last == nil {
			continue
		}
		cur := w.groups[c.group].snap.GetVersion(resourcev3.EndpointType)
		names := st.req.GetResourceNames()
		c.send(resourcev3.EndpointType, names, st.last.GetVersionInfo(), st.last.GetNonce(), false)
		if st.watch {
			if !w.everRejected[[3]string{c.id, resourcev3.EndpointType, cur}] {
				t.Fatalf("%s: owed an EDS answer after CDS, its EDS request is held", c.id)
			}
			continue
		}
		c.send(resourcev3.EndpointType, names, st.last.GetVersionInfo(), st.last.GetNonce(), false)
		if !st.watch {
			t.Fatalf("%s: the ACK of the owed EDS answer was answered again", c.id)
		}
	}
	w.settle()
	before := map[string]int{}
	for _, c := range w.sotw {
		before[c.id] = c.received
	}

	// Delta streams converge and then stay quiet.
	for _, d := range w.delta {
		if !d.alive {
			d.open()
		}
	}
	w.waitFor("delta streams converge:", func() bool {
		why := ""
		defer func() { w.why = why }()
		watches := map[string]int{}
		for _, d := range w.delta {
			snap := w.groups[d.group].snap
			for typ, dt := range d.types {
				if !dt.started {
					continue
				}
				if dt.unacked {
					d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: dt.nonce})
					why = "an ACK is on its way"
					continue
				}
				watches[d.group]++
				want := map[string]string{}
				for n, r := range snap.GetResourcesAndTTL(typ) {
					if dt.wildcard || dt.names[n] {
						b, err := cachev3.MarshalResource(r.Resource)
						require.NoError(t, err)
						want[n] = string(b)
					}
				}
				if !maps.Equal(want, dt.known) {
					why = fmt.Sprintf("%s has %v of %s, the group %v (or other content)", d.id, slices.Sorted(maps.Keys(dt.known)), shortType[typ], slices.Sorted(maps.Keys(want)))
				}
			}
		}
		if why != "" {
			return false
		}
		for key, n := range watches {
			info := w.env.cache.GetStatusInfo(key)
			if info == nil {
				why = key + " has no delta watch yet"
				return false
			}
			if got := info.GetNumDeltaWatches(); got != n {
				why = fmt.Sprintf("%s holds %d delta watches, want %d", key, got, n)
				return false
			}
		}
		return true
	})
	w.why = ""
	quietDelta := map[string]int{}
	for _, d := range w.delta {
		quietDelta[d.id] = d.responses
	}
	w.settle()
	w.drain()
	for _, d := range w.delta {
		require.Equal(t, quietDelta[d.id], d.responses, "%s was sent more after converging", d.id)
	}
	for _, c := range w.sotw {
		require.Equal(t, before[c.id], c.received, "%s was sent more after its ACKs", c.id)
	}

	w.checkProxies()
	w.checkRejectionBound()

	// A publication that moves the versions, then Forget: what is left of
	// the rejections is what still applies.
	for _, key := range slices.Sorted(maps.Keys(w.groups)) {
		w.publish(key, 5)
	}
	w.env.cache.Forget()
	lower, upper := 0, 0
	for k, r := range w.recs {
		if w.groups[w.groupOfNode(k[0])].snap.GetVersion(k[1]) == r.version {
			lower++
		}
	}
	for k, v := range w.latestNack {
		if w.groups[w.groupOfNode(k[0])].snap.GetVersion(k[1]) == v {
			upper++
		}
	}
	got := w.env.cache.Rejections()
	if got < lower || got > upper {
		t.Fatalf("after Forget %d rejections remembered; between %d and %d still apply", got, lower, upper)
	}
}

// existingNames draws a request for resources the snapshot has: all of
// them (no names) or a non-empty subset.
func existingNames(w *propWorld, snap *cachev3.Snapshot, typ string) []string {
	have := slices.Sorted(maps.Keys(snap.GetResourcesAndTTL(typ)))
	if len(have) == 0 || w.rng.IntN(3) == 0 {
		return nil
	}
	var out []string
	for _, n := range have {
		if w.rng.IntN(2) == 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		out = append(out, have[w.rng.IntN(len(have))])
	}
	return out
}
