package fleet

import (
	"context"
	"encoding/json"
	"sort"
	"sync"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/store"
)

// View is the fleet as one replica sees it: its own proxies from memory,
// the other replicas' as their status in the store, followed by a watch
// (Run), each proxy once by node id.
type View struct {
	replica string
	tracker *xdsserver.Tracker
	store   *store.Store
	// storeUp says whether the store answers, and why not.
	storeUp func() (bool, string)

	mu sync.Mutex
	// others: replica → node → status, as last seen in the store.
	others map[string]map[string]api.ProxyStatus
	// live: the watch has listed the status and follows it; why says
	// what is wrong when it does not.
	live bool
	why  string
}

// NewView returns the view of replica, whose proxies tr follows; storeUp
// (nil: always up) says whether the store answers.
func NewView(replica string, tr *xdsserver.Tracker, st *store.Store, storeUp func() (bool, string)) *View {
	return &View{replica: replica, tracker: tr, store: st, storeUp: storeUp,
		others: map[string]map[string]api.ProxyStatus{}, why: "the other replicas' status has not been read yet"}
}

// Run follows the other replicas' status, and the rejections every
// replica shares (adopted into this replica's guard), until ctx ends.
func (v *View) Run(ctx context.Context) {
	status := v.store.WatchStatus(ctx)
	rejections := v.store.WatchRejections(ctx)
	for status != nil || rejections != nil {
		select {
		case ev, ok := <-status:
			if !ok {
				status = nil
				continue
			}
			v.applyStatus(ev)
		case ev, ok := <-rejections:
			if !ok {
				rejections = nil
				continue
			}
			v.applyRejections(ev)
		}
	}
}

func (v *View) applyStatus(ev store.PairEvent) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if ev.Err != nil {
		v.live, v.why = false, "the other replicas' status cannot be followed: "+ev.Err.Error()
		return
	}
	v.live, v.why = true, ""
	if ev.Resync != nil {
		v.others = map[string]map[string]api.ProxyStatus{}
		for replica, nodes := range ev.Resync {
			for node, raw := range nodes {
				v.putLocked(replica, node, raw)
			}
		}
	}
	for _, c := range ev.Changes {
		if c.Value == nil {
			delete(v.others[c.First], c.Second)
			if len(v.others[c.First]) == 0 {
				delete(v.others, c.First)
			}
			continue
		}
		v.putLocked(c.First, c.Second, c.Value)
	}
}

// putLocked records one stored status; values that do not decode, and
// this replica's own (its memory is newer), are left out.
func (v *View) putLocked(replica, node string, raw []byte) {
	if replica == v.replica {
		return
	}
	var p api.ProxyStatus
	if json.Unmarshal(raw, &p) != nil {
		return
	}
	p.ID, p.Replica = node, replica
	if v.others[replica] == nil {
		v.others[replica] = map[string]api.ProxyStatus{}
	}
	v.others[replica][node] = p
}

func (v *View) applyRejections(ev store.PairEvent) {
	adopt := func(raw []byte) {
		var rj xdsserver.Rejection
		if json.Unmarshal(raw, &rj) == nil {
			v.tracker.Adopt(rj)
		}
	}
	for _, types := range ev.Resync {
		for _, raw := range types {
			adopt(raw)
		}
	}
	for _, c := range ev.Changes {
		if c.Value != nil {
			adopt(c.Value)
		}
	}
}

// Proxies returns every proxy of every replica, sorted by ID, each node id
// once: a proxy that moved from a replica that died (whose status stays in
// the store until its lease expires) is listed where it connected last.
func (v *View) Proxies(context.Context) []api.ProxyStatus {
	byID := map[string]api.ProxyStatus{}
	for _, p := range v.tracker.Proxies() {
		byID[p.ID] = p
	}
	v.mu.Lock()
	for _, nodes := range v.others {
		for id, p := range nodes {
			if cur, ok := byID[id]; ok && !p.ConnectedAt.After(cur.ConnectedAt) {
				continue // the newest connection wins; on a tie, this replica's
			}
			byID[id] = p
		}
	}
	v.mu.Unlock()
	out := make([]api.ProxyStatus, 0, len(byID))
	for _, p := range byID {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Partial reports whether the view may miss or misstate the other
// replicas' proxies (the store is unreachable, or the watch of their
// status broke), and why. This replica's own proxies are always current.
func (v *View) Partial() (bool, string) {
	if v.storeUp != nil {
		if up, reason := v.storeUp(); !up {
			return true, "the store is unreachable; the other replicas' proxies are as last seen: " + reason
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.live {
		return true, v.why + "; the other replicas' proxies are as last seen"
	}
	return false, ""
}

// Local returns one proxy connected to this replica.
func (v *View) Local(id string) (api.ProxyStatus, bool) { return v.tracker.Proxy(id) }

// RolloutOf counts proxies converged, rejecting and pending.
func RolloutOf(ps []api.ProxyStatus) api.Rollout {
	var r api.Rollout
	for _, p := range ps {
		r.Total++
		switch {
		case p.Converged:
			r.Converged++
		case p.Rejecting():
			r.Rejecting++
		default:
			r.Pending++
		}
	}
	return r
}
