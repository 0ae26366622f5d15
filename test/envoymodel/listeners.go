package envoymodel

import (
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
)

// listenerInst is one listener as the listener manager builds it from LDS.
type listenerInst struct {
	msg      *listenerv3.Listener
	version  string
	rds      []string
	timedOut bool // became active because an RDS subscription it waited on timed out
}

type listenerSlot struct{ active, warming *listenerInst }

// routeSub is a shared RDS subscription (one per route_config_name): it is ready, and
// every listener using it initialized, once it got its route configuration or timed out.
type routeSub struct {
	msg      *routev3.RouteConfiguration
	version  string
	ready    bool
	timedOut bool
	deadline time.Time
}

// applyListeners is LdsApiImpl::onConfigUpdate with ListenerManagerImpl's
// addOrUpdateListener: RDS is paused meanwhile, and is only re-requested if the set of
// route configuration names changed.
func (e *Envoy) applyListeners(items []item, removed []string, full bool) {
	rds := e.typeState(typeRoute)
	e.pause(rds)
	namesChanged := false
	seen := make(map[string]struct{}, len(items))
	for _, it := range items {
		l := it.msg.(*listenerv3.Listener)
		seen[it.name] = struct{}{}
		slot := e.listeners[it.name]
		if slot == nil {
			slot = &listenerSlot{}
			e.listeners[it.name] = slot
		} else if slot.warming != nil {
			if sameMessage(slot.warming.msg, l) {
				continue
			}
		} else if slot.active != nil && sameMessage(slot.active.msg, l) {
			continue
		}
		inst := &listenerInst{msg: l, version: it.version}
		for _, ref := range it.rds {
			inst.rds = append(inst.rds, ref.name)
			if e.routes[ref.name] == nil {
				e.routes[ref.name] = &routeSub{deadline: e.deadline(ref.source)}
				namesChanged = true
			}
		}
		slot.warming = inst
	}
	drop := removed
	if full {
		drop = nil
		for n := range e.listeners {
			if _, ok := seen[n]; !ok {
				drop = append(drop, n)
			}
		}
	}
	for _, n := range drop {
		delete(e.listeners, n)
	}
	// Subscriptions no listener uses any more are destroyed.
	used := map[string]struct{}{}
	for _, s := range e.listeners {
		for _, l := range []*listenerInst{s.active, s.warming} {
			if l != nil {
				for _, n := range l.rds {
					used[n] = struct{}{}
				}
			}
		}
	}
	for n := range e.routes {
		if _, ok := used[n]; !ok {
			delete(e.routes, n)
			namesChanged = true
		}
	}
	if namesChanged {
		if rds.subscribed {
			e.queue(rds)
		} else if len(e.routes) > 0 {
			e.subscribe(rds)
		}
	}
	e.promoteListeners()
	e.resume(rds)
}

// applyRoutes delivers route configurations to their subscriptions.
func (e *Envoy) applyRoutes(items []item) {
	for _, it := range items {
		r := e.routes[it.name]
		if r == nil {
			continue
		}
		r.msg, r.version = it.msg.(*routev3.RouteConfiguration), it.version
		r.ready, r.timedOut, r.deadline = true, false, time.Time{}
	}
	e.promoteListeners()
}

func (e *Envoy) routesTimedOut(now time.Time) {
	for _, r := range e.routes {
		if !r.ready && !r.deadline.IsZero() && !now.Before(r.deadline) {
			r.ready, r.timedOut = true, true
		}
	}
	e.promoteListeners()
}

// promoteListeners moves every warming listener whose RDS subscriptions are all
// ready to active.
func (e *Envoy) promoteListeners() {
	for _, s := range e.listeners {
		w := s.warming
		if w == nil {
			continue
		}
		ready := true
		for _, n := range w.rds {
			r := e.routes[n]
			if !r.ready {
				ready = false
				break
			}
			if r.timedOut && r.msg == nil {
				w.timedOut = true
			}
		}
		if !ready {
			continue
		}
		if w.timedOut {
			e.stats.ListenersWarmedByTimeout++
		}
		s.active, s.warming = w, nil
	}
}

// Resource is one resource as the model holds it. Message is shared with the model,
// and with every other instance that received the same bytes, and must not be modified.
type Resource struct {
	// Version is the SotW version_info or the delta resource version it came with.
	Version string
	// Message is the decoded resource (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment,
	// *listenerv3.Listener or *routev3.RouteConfiguration).
	Message proto.Message
	// WarmedByTimeout is set on a cluster or listener that became active only because
	// initial_fetch_timeout fired.
	WarmedByTimeout bool
}

// Config is what the instance serves: its active resources by name.
type Config struct {
	// Clusters and Listeners are the active ones, not those still warming.
	Clusters, Listeners map[string]Resource
	// Endpoints holds, per active cluster name, the assignment that cluster uses;
	// an EDS cluster without endpoints (for example warmed by timeout) is absent.
	Endpoints map[string]Resource
	// Routes holds the route configurations received for RDS subscriptions in use.
	Routes map[string]Resource
}

// Config returns the active configuration.
func (e *Envoy) Config() Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := Config{
		Clusters:  map[string]Resource{},
		Listeners: map[string]Resource{},
		Endpoints: map[string]Resource{},
		Routes:    map[string]Resource{},
	}
	for n, s := range e.clusters {
		if a := s.active; a != nil {
			c.Clusters[n] = Resource{Version: a.version, Message: a.msg, WarmedByTimeout: a.timedOut}
			if a.cla != nil {
				c.Endpoints[n] = Resource{Version: a.claVer, Message: a.cla}
			}
		}
	}
	for n, s := range e.listeners {
		if a := s.active; a != nil {
			c.Listeners[n] = Resource{Version: a.version, Message: a.msg, WarmedByTimeout: a.timedOut}
		}
	}
	for n, r := range e.routes {
		if r.msg != nil {
			c.Routes[n] = Resource{Version: r.version, Message: r.msg}
		}
	}
	return c
}
