package xdsserver

import (
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/bulwarkmesh/bulwark/xds/ir"
	"github.com/bulwarkmesh/bulwark/xds/resolve"
)

// OutboundMetadataKey is the node metadata field with which an Envoy sidecar
// moves its outbound listener ("127.0.0.1:15006"). Proxies that set it form a
// group of their own.
const OutboundMetadataKey = "BULWARK_OUTBOUND"

// DefaultOutbound is the Envoy outbound listener's address.
var DefaultOutbound = ir.Address{Host: resolve.DefaultOutboundHost, Port: resolve.DefaultOutboundPort}

// UnknownCaller is the service of the one group that serves every proxy
// whose node.cluster names no known caller. It is not a DNS label, so no
// Service can take it. Its config is what a caller without a Service of its
// own gets: every service, and the policies that name no sources.
const UnknownCaller = "~unknown"

// MaxOutboundOverrides bounds the distinct outbound addresses (node metadata
// BULWARK_OUTBOUND) in use at once: each makes a group of its own, and the
// value comes from the client. Beyond it, a new address is ignored (the
// proxy gets the default listener address), logged and counted.
const MaxOutboundOverrides = 16

// GroupKey identifies proxies that receive identical config: same flavor,
// same calling service, same outbound address.
type GroupKey struct {
	Flavor   ir.Flavor
	Service  string
	Outbound ir.Address
}

// String renders the key as the snapshot cache's node ID: "flavor/service",
// with "@host:port" when the outbound address is not the default.
func (k GroupKey) String() string {
	s := string(k.Flavor) + "/" + k.Service
	if k.Flavor == ir.FlavorEnvoy && k.Outbound != DefaultOutbound {
		s += "@" + net.JoinHostPort(k.Outbound.Host, strconv.Itoa(k.Outbound.Port))
	}
	return s
}

// FlavorOf tells a proxyless gRPC client from an Envoy by node.user_agent_name.
func FlavorOf(node *corev3.Node) ir.Flavor {
	if strings.Contains(strings.ToLower(node.GetUserAgentName()), "grpc") {
		return ir.FlavorGRPC
	}
	return ir.FlavorEnvoy
}

// Groups maps nodes to groups with a bounded number of groups: one per
// known caller (a Service, or a name that policies' sources use), one for
// every other caller, and at most MaxOutboundOverrides outbound addresses.
// The zero value, and a nil *Groups, know every caller.
type Groups struct {
	// known is the set of known callers; nil knows every name.
	known atomic.Pointer[map[string]bool]
	// gen counts changes of known, so streams notice they may move.
	gen atomic.Uint64

	mu        sync.Mutex
	outbounds map[ir.Address]bool
	// onIgnored is told of an outbound override beyond the bound.
	onIgnored func(node *corev3.Node)
}

// SetKnownCallers replaces the set of known callers. The generation moves
// only when the set changed: every stream checks it on each request, and a
// move makes each of them choose its group again.
func (g *Groups) SetKnownCallers(names []string) {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	if old := g.known.Load(); old != nil && maps.Equal(*old, m) {
		return
	}
	g.known.Store(&m)
	g.gen.Add(1)
}

// Generation changes whenever the known callers do.
func (g *Groups) Generation() uint64 {
	if g == nil {
		return 0
	}
	return g.gen.Load()
}

// Of returns the group a node belongs to.
func (g *Groups) Of(node *corev3.Node) GroupKey {
	k := GroupKey{Flavor: FlavorOf(node), Service: node.GetCluster(), Outbound: DefaultOutbound}
	if g != nil {
		if known := g.known.Load(); known != nil && !(*known)[k.Service] {
			k.Service = UnknownCaller
		}
	}
	if k.Flavor != ir.FlavorEnvoy {
		k.Outbound = ir.Address{}
		return k
	}
	v, ok := node.GetMetadata().GetFields()[OutboundMetadataKey]
	if !ok {
		return k
	}
	host, port, err := net.SplitHostPort(v.GetStringValue())
	if err != nil {
		return k
	}
	p, err := strconv.Atoi(port)
	if err != nil || p <= 0 || p >= 65536 || net.ParseIP(host) == nil {
		return k
	}
	addr := ir.Address{Host: host, Port: p}
	if addr != DefaultOutbound && !g.admitOutbound(addr, node) {
		return k
	}
	k.Outbound = addr
	return k
}

// admitOutbound reports whether an outbound override may make a group.
func (g *Groups) admitOutbound(addr ir.Address, node *corev3.Node) bool {
	if g == nil {
		return true
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.outbounds[addr] {
		return true
	}
	if len(g.outbounds) >= MaxOutboundOverrides {
		if g.onIgnored != nil {
			g.onIgnored(node)
		}
		return false
	}
	if g.outbounds == nil {
		g.outbounds = map[ir.Address]bool{}
	}
	g.outbounds[addr] = true
	return true
}

// RetainOutbounds forgets the outbound overrides that no group in use has,
// so that their room is free again.
func (g *Groups) RetainOutbounds(inUse map[ir.Address]bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for a := range g.outbounds {
		if !inUse[a] {
			delete(g.outbounds, a)
		}
	}
}

// NodeHash maps every node to its group, so all proxies of a group share one
// snapshot in the cache.
type NodeHash struct{ groups *Groups }

// ID implements cachev3.NodeHash.
func (h NodeHash) ID(node *corev3.Node) string { return h.groups.Of(node).String() }
