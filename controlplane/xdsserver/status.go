package xdsserver

import (
	"sort"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
)

// The tracker's proxy status: which versions each group serves, which
// each proxy ACKed or NACKed, and whether it converged.

// maxVersionsKept bounds the per-type version history of a group.
const maxVersionsKept = 64

// Publication says that a group now serves versions (type URL → version)
// built from a store revision first observed at ObservedAt.
type Publication struct {
	Group      string
	Versions   map[string]string
	Revision   int64
	ObservedAt time.Time
}

// Published records publications. It takes the Tracker's lock once for a
// whole round of builds, however many groups, types and proxies: every ACK
// of the fleet contends for that lock.
func (t *Tracker) Published(pubs ...Publication) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, pub := range pubs {
		t.publishedLocked(pub)
	}
}

func (t *Tracker) publishedLocked(pub Publication) {
	group, revision, observedAt := pub.Group, pub.Revision, pub.ObservedAt
	byType := t.versions[group]
	if byType == nil {
		byType = map[string]map[string]versionInfo{}
		t.versions[group] = byType
	}
	if t.current[group] == nil {
		t.current[group] = map[string]string{}
	}
	for typeURL, version := range pub.Versions {
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

func (t *Tracker) ack(nodeID, typeURL, version string) {
	t.mu.Lock()
	p := t.proxies[nodeID]
	if p == nil {
		t.mu.Unlock()
		return
	}
	ts := typeStatus(p, typeURL)
	first := ts.Acked != version
	ts.Acked, ts.AckedAt = version, time.Now().UTC()
	info, known := t.versions[p.Group][typeURL][version]
	if known {
		ts.AckedRevision = info.revision
	}
	t.refreshLocked(p)
	t.mu.Unlock()
	if first && known && !info.observedAt.IsZero() {
		t.metrics.Convergence.Observe(time.Since(info.observedAt).Seconds())
	}
	t.dirty(nodeID)
}

// check refuses a request beyond the limits: the node on a stream's first
// request, the type URL on every one.
func (t *Tracker) check(id int64, node *corev3.Node, typeURL string) error {
	if t.stream(id).nodeID == "" {
		if err := t.admit.CheckNode(node); err != nil {
			return err
		}
	}
	return t.admit.CheckType(node, typeURL)
}

// reject tells the cache what a SotW NACK rejected: the version sent on
// this stream, for the names the request still asks for.
func (t *Tracker) reject(id int64, nodeID string, req *discoveryv3.DiscoveryRequest) {
	st := t.stream(id)
	sent := st.sent[req.GetTypeUrl()]
	t.mu.Lock()
	group := ""
	if p := t.proxies[nodeID]; p != nil {
		group = p.Group
	}
	t.mu.Unlock()
	t.cache.Reject(nodeID, id, group, req.GetTypeUrl(), sent.version, req.GetResourceNames())
	t.cache.setDetail(nodeID, req.GetTypeUrl(), req.GetErrorDetail().GetMessage())
	if t.OnReject != nil {
		t.OnReject(nodeID, req.GetTypeUrl())
	}
}

func (t *Tracker) nack(nodeID, typeURL, version, detail string) {
	t.metrics.Nacks.WithLabelValues(typeLabel(typeURL)).Inc()
	t.mu.Lock()
	if p := t.proxies[nodeID]; p != nil {
		typeStatus(p, typeURL).LastNack = &api.Nack{Version: version, Error: detail, Time: time.Now().UTC()}
		t.refreshLocked(p)
	}
	t.mu.Unlock()
	t.dirty(nodeID)
}

func (t *Tracker) dirty(nodeID string) {
	if t.OnDirty != nil {
		t.OnDirty(nodeID)
	}
}

// refreshLocked recomputes a proxy's convergence. t.mu must be held.
func (t *Tracker) refreshLocked(p *api.ProxyStatus) {
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

func typeStatus(p *api.ProxyStatus, typeURL string) *api.TypeStatus {
	short := typeLabel(typeURL)
	ts := p.Types[short]
	if ts == nil {
		ts = &api.TypeStatus{}
		p.Types[short] = ts
	}
	return ts
}

// TypeLabels returns the short names of the resource types, the closed set
// of the metrics' "type" label.
func TypeLabels() []string {
	out := make([]string, 0, len(shortType))
	for _, s := range shortType {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// SetOnSent installs a function that sees every response sent (nil removes
// it); tests count resends with it.
func (t *Tracker) SetOnSent(f func(nodeID, typeURL, version string)) {
	t.mu.Lock()
	t.onSent = f
	t.mu.Unlock()
}

// typeLabel names a type URL for people and metrics: one of TypeLabels, or
// "other" (unknown type URLs are refused, and metric labels come from a
// closed set).
func typeLabel(typeURL string) string {
	if s, ok := shortType[typeURL]; ok {
		return s
	}
	return "other"
}

// Proxies returns a copy of every proxy's status, sorted by ID.
func (t *Tracker) Proxies() []api.ProxyStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]api.ProxyStatus, 0, len(t.proxies))
	for _, p := range t.proxies {
		out = append(out, cloneProxy(p))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Proxy returns one proxy's status.
func (t *Tracker) Proxy(id string) (api.ProxyStatus, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.proxies[id]
	if !ok {
		return api.ProxyStatus{}, false
	}
	return cloneProxy(p), true
}

func cloneProxy(p *api.ProxyStatus) api.ProxyStatus {
	c := *p
	c.Types = make(map[string]*api.TypeStatus, len(p.Types))
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
func (t *Tracker) Groups() map[string]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]bool, len(t.members))
	for g := range t.members {
		out[g] = true
	}
	return out
}
