package xdsserver

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

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
	// deltaNacks: delta node, type → what the responses it NACKed carried
	// (name → encoded resource), which no stream of it is sent again.
	deltaNacks map[[2]string]map[string]string

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
	last     map[string]string // name → encoded resource, of the last response
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
		deltaNacks: map[[2]string]map[string]string{},
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
