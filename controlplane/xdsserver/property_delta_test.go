package xdsserver

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

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
		key := [2]string{d.id, typ}
		if w.deltaNacks[key] == nil {
			w.deltaNacks[key] = map[string]string{}
		}
		maps.Copy(w.deltaNacks[key], dt.last)
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
	dt.last = map[string]string{}
	for _, r := range resp.GetResources() {
		dt.last[r.GetName()] = string(r.GetResource().GetValue())
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
				known := maps.Clone(dt.known)
				for n, r := range snap.GetResourcesAndTTL(typ) {
					if dt.wildcard || dt.names[n] {
						b, err := cachev3.MarshalResource(r.Resource)
						require.NoError(t, err)
						if c, ok := w.deltaNacks[[2]string{d.id, typ}][n]; ok && c == string(b) {
							// Content it rejected: held back from every
							// stream of it, whatever it has.
							delete(known, n)
							continue
						}
						want[n] = string(b)
					}
				}
				if !maps.Equal(want, known) {
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
	for k, rejected := range w.deltaNacks {
		if w.deltaStillRejected(k, rejected) {
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

// deltaStillRejected reports whether a delta node's group still has one of
// the resources it rejected, with the content rejected.
func (w *propWorld) deltaStillRejected(k [2]string, rejected map[string]string) bool {
	snap := w.groups[w.groupOfNode(k[0])].snap
	for n, r := range snap.GetResourcesAndTTL(k[1]) {
		b, err := cachev3.MarshalResource(r.Resource)
		require.NoError(w.t, err)
		if c, ok := rejected[n]; ok && c == string(b) {
			return true
		}
	}
	return false
}
