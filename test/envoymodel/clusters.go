package envoymodel

import (
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// clusterInst is one cluster object as the cluster manager builds it from a CDS
// resource; a changed cluster is a new instance with its own, empty host set.
type clusterInst struct {
	msg      *clusterv3.Cluster
	version  string
	eds      string // EDS service name; "" when the cluster does not use EDS
	cla      *endpointv3.ClusterLoadAssignment
	claVer   string
	deadline time.Time // initial_fetch_timeout of its EDS subscription; zero for none
	timedOut bool
}

// clusterSlot holds a cluster's active and warming instances (active_clusters_ and
// warming_clusters_ in ClusterManagerImpl).
type clusterSlot struct{ active, warming *clusterInst }

func edsServiceName(c *clusterv3.Cluster) string {
	if c.GetClusterType() != nil || c.GetType() != clusterv3.Cluster_EDS {
		return ""
	}
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

// deadline returns when a subscription started now on config source cs times out.
func (e *Envoy) deadline(cs *corev3.ConfigSource) time.Time {
	d := e.opts.InitialFetchTimeout
	if t := cs.GetInitialFetchTimeout(); t != nil {
		d = t.AsDuration()
	}
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// applyClusters is CdsApiHelper::onConfigUpdate with ClusterManagerImpl's
// addOrUpdateCluster/removeCluster: EDS is paused meanwhile, so the EDS request that
// new watches (or removed ones) call for goes out once, after the update.
func (e *Envoy) applyClusters(items []item, removed []string, full bool) {
	eds := e.typeState(typeEndpoint)
	e.pause(eds)
	watchChanged := false
	seen := make(map[string]struct{}, len(items))
	for _, it := range items {
		c := it.msg.(*clusterv3.Cluster)
		seen[it.name] = struct{}{}
		slot := e.clusters[it.name]
		if slot == nil {
			slot = &clusterSlot{}
			e.clusters[it.name] = slot
		} else if slot.warming != nil {
			if sameMessage(slot.warming.msg, c) {
				continue
			}
		} else if slot.active != nil && sameMessage(slot.active.msg, c) {
			continue
		}
		inst := &clusterInst{msg: c, version: it.version, eds: edsServiceName(c)}
		if slot.warming != nil && slot.warming.eds != "" {
			watchChanged = true // the replaced warming cluster's watch goes away
		}
		if inst.eds == "" {
			// Pre-init completes at once: the instance is active immediately.
			if slot.active != nil && slot.active.eds != "" {
				watchChanged = true
			}
			slot.active, slot.warming = inst, nil
			continue
		}
		inst.deadline = e.deadline(c.GetEdsClusterConfig().GetEdsConfig())
		slot.warming = inst
		watchChanged = true // the new cluster's EDS subscription adds a watch
	}
	drop := removed
	if full {
		drop = nil
		for n := range e.clusters {
			if _, ok := seen[n]; !ok {
				drop = append(drop, n)
			}
		}
	}
	for _, n := range drop {
		slot := e.clusters[n]
		if slot == nil {
			continue
		}
		if (slot.active != nil && slot.active.eds != "") || (slot.warming != nil && slot.warming.eds != "") {
			watchChanged = true
		}
		delete(e.clusters, n)
	}
	e.edsWatchesChanged()
	if watchChanged {
		if eds.subscribed {
			e.queue(eds)
		} else if len(e.names(eds)) > 0 {
			e.subscribe(eds)
		}
	}
	e.resume(eds)
	e.cdsSeen = true
	e.clustersChanged()
}

// applyEndpoints delivers assignments to every cluster instance watching them; a
// warming instance that gets its assignment finishes warming.
func (e *Envoy) applyEndpoints(items []item, removed []string) {
	watching := e.edsWatchers(len(items) + len(removed))
	for _, it := range items {
		cla := it.msg.(*endpointv3.ClusterLoadAssignment)
		for _, s := range watching(it.name) {
			if s.active != nil && s.active.eds == it.name {
				s.active.cla, s.active.claVer = cla, it.version
			}
			if s.warming != nil && s.warming.eds == it.name {
				s.warming.cla, s.warming.claVer = cla, it.version
				e.promoteCluster(s)
			}
		}
	}
	// A delta removal reaches EdsClusterImpl as an empty update: pre-init completes
	// with whatever hosts the instance has (none for a new one).
	for _, n := range removed {
		for _, s := range watching(n) {
			if s.warming != nil && s.warming.eds == n {
				e.promoteCluster(s)
			}
		}
	}
	e.clustersChanged()
}

// edsWatchers returns the cluster slots watching an EDS service name, as they are now:
// a slot whose instances watch the name is listed once. For a few names (a delta
// update) it scans the clusters for each; for more it indexes them once. Promoting a
// cluster meanwhile only moves a watch from the warming to the active instance, so
// both return the same slots for every name.
func (e *Envoy) edsWatchers(names int) func(string) []*clusterSlot {
	watches := func(s *clusterSlot, n string) bool {
		return (s.active != nil && s.active.eds == n) || (s.warming != nil && s.warming.eds == n)
	}
	if names <= 4 {
		var buf []*clusterSlot
		return func(n string) []*clusterSlot {
			buf = buf[:0]
			for _, s := range e.clusters {
				if watches(s, n) {
					buf = append(buf, s)
				}
			}
			return buf
		}
	}
	byName := map[string][]*clusterSlot{}
	for _, s := range e.clusters {
		if s.active != nil && s.active.eds != "" {
			byName[s.active.eds] = append(byName[s.active.eds], s)
		}
		if w := s.warming; w != nil && w.eds != "" && (s.active == nil || s.active.eds != w.eds) {
			byName[w.eds] = append(byName[w.eds], s)
		}
	}
	return func(n string) []*clusterSlot { return byName[n] }
}

// edsWatchesChanged forgets the EDS names derived from the clusters; callers hold e.mu
// and call it after changing a slot's instances.
func (e *Envoy) edsWatchesChanged() { e.edsNames, e.edsSorted = nil, nil }

// edsWatches returns the EDS service names the cluster instances watch, as a set and
// sorted (nil if none); both are shared and must not be modified.
func (e *Envoy) edsWatches() (map[string]struct{}, []string) {
	if e.edsNames == nil {
		e.edsNames = map[string]struct{}{}
		for _, s := range e.clusters {
			for _, c := range []*clusterInst{s.active, s.warming} {
				if c != nil && c.eds != "" {
					e.edsNames[c.eds] = struct{}{}
				}
			}
		}
		e.edsSorted = sorted(e.edsNames)
	}
	return e.edsNames, e.edsSorted
}

// promoteCluster is clusterWarmingToActive. The replaced instance is destroyed, and
// with it its EDS watch, which queues an EDS request with the (unchanged) names.
func (e *Envoy) promoteCluster(s *clusterSlot) {
	old := s.active
	s.active, s.warming = s.warming, nil
	e.edsWatchesChanged()
	if s.active.timedOut {
		e.stats.ClustersWarmedByTimeout++
	}
	if old != nil && old.eds != "" {
		e.queue(e.typeState(typeEndpoint))
	}
}

// clustersChanged is updateClusterCounts plus the end of cluster manager init: after
// init, CDS stays paused (its ACK held back) while any cluster is warming; at the end
// of init the server starts LDS.
func (e *Envoy) clustersChanged() {
	warming := false
	for _, s := range e.clusters {
		if s.warming != nil {
			warming = true
			break
		}
	}
	if e.initDone {
		cds := e.typeState(typeCluster)
		if warming && !e.cdsWarmPaused {
			e.cdsWarmPaused = true
			e.pause(cds)
		} else if !warming && e.cdsWarmPaused {
			e.cdsWarmPaused = false
			e.resume(cds)
		}
		return
	}
	if e.cdsSeen && !warming {
		e.initDone = true
		e.subscribe(e.typeState(typeListener))
	}
}

// armTimer points the single timer at the earliest pending initial_fetch_timeout.
func (e *Envoy) armTimer() {
	if e.closed {
		return
	}
	var next time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if !e.cdsSeen {
		earlier(e.cdsDeadline)
	}
	for _, s := range e.clusters {
		if s.warming != nil {
			earlier(s.warming.deadline)
		}
	}
	for _, r := range e.routes {
		if !r.ready {
			earlier(r.deadline)
		}
	}
	if next.IsZero() {
		if e.timer != nil {
			e.timer.Stop()
		}
		return
	}
	d := time.Until(next)
	if e.timer == nil {
		e.timer = time.AfterFunc(d, e.onTimer)
	} else {
		e.timer.Reset(d)
	}
}

func (e *Envoy) onTimer() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	now := time.Now()
	if !e.cdsSeen && !e.cdsDeadline.IsZero() && !now.Before(e.cdsDeadline) {
		e.cdsSeen = true // CdsApiImpl::onConfigUpdateFailed lets init continue
	}
	for _, s := range e.clusters {
		w := s.warming
		if w == nil || w.deadline.IsZero() || now.Before(w.deadline) {
			continue
		}
		w.timedOut = true
		if e.opts.UseEDSCacheOnTimeout && s.active != nil && s.active.eds == w.eds {
			w.cla, w.claVer = s.active.cla, s.active.claVer
		}
		e.promoteCluster(s)
	}
	e.routesTimedOut(now)
	e.clustersChanged()
	e.settle()
}

// WarmingClusters returns the names of clusters that are warming, sorted.
func (e *Envoy) WarmingClusters() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return sortedKeys(e.clusters, func(s *clusterSlot) bool { return s.warming != nil })
}

// WarmingListeners returns the names of listeners that are warming, sorted.
func (e *Envoy) WarmingListeners() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return sortedKeys(e.listeners, func(s *listenerSlot) bool { return s.warming != nil })
}

// AllWarm reports whether initialization has finished (CDS received, its clusters
// warm, LDS requested) and no cluster or listener is warming.
func (e *Envoy) AllWarm() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.initDone {
		return false
	}
	for _, s := range e.clusters {
		if s.warming != nil {
			return false
		}
	}
	for _, s := range e.listeners {
		if s.warming != nil {
			return false
		}
	}
	return true
}
