package xdsserver

import (
	"sort"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// Rejections shared between replicas. A proxy that rejected a version on
// one replica and reconnects to another (its replica died, or a load
// balancer moved it) must not be sent that version again there either, and
// must be reported as rejecting it, not as converged. Each replica persists
// its guard's records (controlplane/fleet) and adopts the others'.

// Rejection is what one proxy rejected of one type, as replicas share it.
type Rejection struct {
	Node  string `json:"node"`
	Type  string `json:"type"` // type URL
	Group string `json:"group"`
	// Version was rejected, for every name (All) or for Names.
	Version string   `json:"version"`
	All     bool     `json:"all,omitempty"`
	Names   []string `json:"names,omitempty"`
	// Error is the proxy's error detail.
	Error string    `json:"error,omitempty"`
	Time  time.Time `json:"time"`
}

// Rejection returns what a node rejected of a type, as this replica's guard
// remembers it, with the proxy's error detail when it is connected here.
func (t *Tracker) Rejection(nodeID, typeURL string) (Rejection, bool) {
	g := t.cache
	g.mu.Lock()
	r := g.rejected[nodeID][typeURL]
	var out Rejection
	if r != nil {
		out = Rejection{Node: nodeID, Type: typeURL, Group: r.group, Version: r.version, All: r.all, Error: r.detail, Time: r.at}
		for n := range r.names {
			out.Names = append(out.Names, n)
		}
		sort.Strings(out.Names)
	}
	g.mu.Unlock()
	if r == nil {
		return Rejection{}, false
	}
	t.mu.Lock()
	if p := t.proxies[nodeID]; p != nil {
		if ts := p.Types[typeLabel(typeURL)]; ts != nil && ts.LastNack != nil && ts.LastNack.Version == out.Version {
			out.Error, out.Time = ts.LastNack.Error, ts.LastNack.Time
		}
	}
	t.mu.Unlock()
	return out, true
}

// Adopt takes a rejection another replica recorded: the guard holds the
// version back from that node here too (on every stream that carries a
// version: a new process with nothing gets the current version once, as
// locally), and a proxy of that node connected here is reported rejecting.
func (t *Tracker) Adopt(rj Rejection) {
	if rj.Node == "" || rj.Version == "" || shortType[rj.Type] == "" {
		return
	}
	g := t.cache
	g.mu.Lock()
	byType := g.rejected[rj.Node]
	if byType == nil {
		byType = map[string]*rejection{}
		g.rejected[rj.Node] = byType
	}
	r := byType[rj.Type]
	if r == nil || r.version != rj.Version || r.group != rj.Group {
		if r == nil {
			g.nRejects++
		}
		r = &rejection{group: rj.Group, version: rj.Version, names: map[string]bool{}, streams: map[int64]bool{}}
		byType[rj.Type] = r
	}
	g.seq++
	r.seq = g.seq
	r.detail, r.at = rj.Error, rj.Time
	if rj.All || len(r.names)+len(rj.Names) > maxRejectedNames {
		r.all, r.names = true, nil
	}
	if !r.all {
		for _, n := range rj.Names {
			r.names[n] = true
		}
	}
	for g.nRejects > maxRejections {
		g.dropOldestLocked()
	}
	g.mu.Unlock()

	t.mu.Lock()
	p := t.proxies[rj.Node]
	if p != nil {
		markRejected(p, rj)
		t.refreshLocked(p)
	}
	t.mu.Unlock()
	if p != nil {
		t.dirty(rj.Node)
	}
}

// markRejected records a rejection in a proxy's status: it was sent the
// version and rejected it, unless it was sent something else since.
func markRejected(p *api.ProxyStatus, rj Rejection) {
	ts := typeStatus(p, rj.Type)
	if ts.Sent != "" && ts.Sent != rj.Version {
		return
	}
	ts.Sent = rj.Version
	ts.LastNack = &api.Nack{Version: rj.Version, Error: rj.Error, Time: rj.Time}
}

// rejectionsOf returns what the guard remembers of a node, every type.
func (g *Cache) rejectionsOf(nodeID string) []Rejection {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []Rejection
	for typ, r := range g.rejected[nodeID] {
		out = append(out, Rejection{Node: nodeID, Type: typ, Group: r.group, Version: r.version, Error: r.detail, Time: r.at})
	}
	return out
}
