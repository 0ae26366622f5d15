package xdsserver

import (
	"maps"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// The NACK guard for delta streams. go-control-plane's delta server
// remembers what it sent on a stream, not what was accepted, so on the
// stream that rejected a resource it does not send that resource again
// until its content changes. A stream that reconnects, to this replica or
// another, declares the versions it accepted (initial_resource_versions),
// and would be sent the rejected resource once more. So a delta rejection
// is remembered as the version each resource of the rejected response had
// on the wire (the hash of its encoding: per resource, the same on every
// replica), shared like any rejection, and every delta watch of that node
// is created as if the stream had the resources the group still has with
// that content, at the versions the snapshot gives them (which decide what
// a delta watch sends): those are not sent, the others are.
//
// A rejection recorded from a state-of-the-world stream (a version of the
// whole type) applies to a delta stream while the group still has that
// version, for the names it covers. Both need the group's snapshot on the
// replica when the watch is created: a proxy's group is built when it
// connects, before its watches, once the replica has read the store (it
// is not ready before).

// heldSubscription is a delta subscription whose returned resources
// include what the node rejected.
type heldSubscription struct {
	cachev3.Subscription
	returned map[string]string
}

// ReturnedResources implements cachev3.Subscription.
func (s heldSubscription) ReturnedResources() map[string]string { return s.returned }

// CreateDeltaWatch waits while a round of snapshots is being published,
// and creates the watch as if the stream had what its node rejected (see
// above). A stream that has nothing (a new process: its first request
// declares no version) gets the current resources once, as on a
// state-of-the-world stream.
func (g *Cache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	g.pub.RLock()
	defer g.pub.RUnlock()
	if returned := sub.ReturnedResources(); len(returned) > 0 && g.rejects(req.GetNode().GetId(), req.GetTypeUrl()) {
		var snap cachev3.ResourceSnapshot
		if s, err := g.SnapshotCache.GetSnapshot(g.hash.ID(req.GetNode())); err == nil {
			snap = s
		}
		g.mu.Lock()
		held := g.deltaHeldLocked(req.GetNode().GetId(), req.GetTypeUrl(), snap)
		g.mu.Unlock()
		if len(held) > 0 {
			merged := maps.Clone(returned)
			maps.Copy(merged, held)
			sub = heldSubscription{Subscription: sub, returned: merged}
		}
	}
	return g.SnapshotCache.CreateDeltaWatch(req, sub, ch)
}

// deltaHeldLocked returns the resources of a type that a node rejected
// and snap still has with the content rejected, each with the version snap
// gives it (what a delta watch compares with what the stream has). g.mu
// must be held.
func (g *Cache) deltaHeldLocked(nodeID, typeURL string, snap cachev3.ResourceSnapshot) map[string]string {
	r := g.rejected[nodeID][typeURL]
	if r == nil || snap == nil {
		return nil
	}
	vm := snap.GetVersionMap(typeURL)
	out := map[string]string{}
	switch {
	case len(r.hashes) > 0:
		resources := snap.GetResourcesAndTTL(typeURL)
		for n, h := range r.hashes {
			if res, ok := resources[n]; ok && vm[n] != "" && wireVersion(res.Resource) == h {
				out[n] = vm[n]
			}
		}
	case snap.GetVersion(typeURL) == r.version && r.all:
		maps.Copy(out, vm)
	case snap.GetVersion(typeURL) == r.version:
		for n := range r.names {
			if v, ok := vm[n]; ok {
				out[n] = v
			}
		}
	}
	return out
}

// wireVersion is the version a delta response gives a resource: the hash
// of its encoding (go-control-plane's; the snapshot's version map, which
// decides what is sent, has Bulwark's own versions).
func wireVersion(r types.Resource) string {
	b, err := cachev3.MarshalResource(r)
	if err != nil {
		return ""
	}
	return cachev3.HashResource(b)
}

// stillRejected reports whether a rejection applies to a group's snapshot:
// it has the version rejected or, for a delta rejection, one of the
// resources rejected with the content rejected.
func (r *rejection) stillRejected(typeURL string, snap cachev3.ResourceSnapshot) bool {
	if len(r.hashes) == 0 {
		return snap.GetVersion(typeURL) == r.version
	}
	resources := snap.GetResourcesAndTTL(typeURL)
	for n, h := range r.hashes {
		if res, ok := resources[n]; ok && wireVersion(res.Resource) == h {
			return true
		}
	}
	return false
}

// RejectDelta records that a node, on a delta stream, rejected a response
// of a type (system version version) that carried resources (name → the
// version it had on the wire) as a member of group. It adds to what the
// node rejected before in that group (per name, the newest content): on
// the stream that rejected it, a resource is not sent again until its
// content changes, whatever else changes.
func (g *Cache) RejectDelta(nodeID, group, typeURL, version string, resources map[string]string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.recordLocked(nodeID, typeURL, group, version, true)
	if r.all || len(r.hashes)+len(resources) > maxRejectedNames {
		// Too many to remember one by one: the rejection covers the
		// version, every name, as a state-of-the-world rejection.
		r.all, r.names, r.hashes = true, nil, nil
	} else {
		if r.hashes == nil {
			r.hashes = map[string]string{}
		}
		for n, v := range resources {
			r.hashes[n] = v
			r.names[n] = true
		}
	}
	g.boundLocked()
}

// deltaHolds reports whether a node's delta stream, sent a version of a
// type as a member of group, is held back from something it rejected: it
// then does not run that version, and is rejecting it. When the version
// is no longer the group's, it reports false (a newer response follows).
func (g *Cache) deltaHolds(nodeID, group, typeURL, version string) (detail string, at time.Time, held bool) {
	if !g.rejects(nodeID, typeURL) {
		return "", time.Time{}, false
	}
	var snap cachev3.ResourceSnapshot
	if s, err := g.SnapshotCache.GetSnapshot(group); err == nil && s.GetVersion(typeURL) == version {
		snap = s
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if snap == nil {
		if s := g.current[group]; s != nil && s.GetVersion(typeURL) == version {
			snap = s
		}
	}
	r := g.rejected[nodeID][typeURL]
	if r == nil || snap == nil {
		return "", time.Time{}, false
	}
	return r.detail, r.at, len(g.deltaHeldLocked(nodeID, typeURL, snap)) > 0
}

// rejects reports whether a node rejected something of a type.
func (g *Cache) rejects(nodeID, typeURL string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rejected[nodeID][typeURL] != nil
}
