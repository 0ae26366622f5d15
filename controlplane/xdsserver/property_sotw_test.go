package xdsserver

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

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
	for _, d := range w.delta {
		if d.id == id {
			return d.group
		}
	}
	return ""
}

func (w *propWorld) checkRejectionBound() {
	if n := w.env.cache.Rejections(); n > len(w.latestNack)+len(w.deltaNacks) {
		w.t.Fatalf("%d rejections remembered, only %d (node, type) pairs NACKed", n, len(w.latestNack)+len(w.deltaNacks))
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
