package fleet

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/store"
)

// listTimeout bounds the read of the other replicas' status.
const listTimeout = 2 * time.Second

// View is the fleet as one replica sees it: its own proxies from memory,
// the other replicas' from the store.
type View struct {
	replica string
	tracker *xdsserver.Tracker
	store   *store.Store
}

// NewView returns the view of replica, whose proxies tr follows.
func NewView(replica string, tr *xdsserver.Tracker, st *store.Store) *View {
	return &View{replica: replica, tracker: tr, store: st}
}

// Proxies returns every proxy of every replica, sorted by ID: this
// replica's from memory, the others' from the store (leased, so a dead
// replica's proxies vanish).
func (v *View) Proxies(ctx context.Context) []api.ProxyStatus {
	out := v.tracker.Proxies()
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	all, err := v.store.ListStatus(ctx)
	if err == nil {
		for replica, nodes := range all {
			if replica == v.replica {
				continue
			}
			for _, raw := range nodes {
				var p api.ProxyStatus
				if json.Unmarshal(raw, &p) == nil {
					out = append(out, p)
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
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
