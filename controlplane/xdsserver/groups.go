package xdsserver

import (
	"net"
	"strconv"
	"strings"

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

// GroupOf returns the group a node belongs to: node.cluster is its service.
func GroupOf(node *corev3.Node) GroupKey {
	k := GroupKey{Flavor: FlavorOf(node), Service: node.GetCluster(), Outbound: DefaultOutbound}
	if k.Flavor == ir.FlavorEnvoy {
		if v, ok := node.GetMetadata().GetFields()[OutboundMetadataKey]; ok {
			if host, port, err := net.SplitHostPort(v.GetStringValue()); err == nil {
				if p, err := strconv.Atoi(port); err == nil && p > 0 && p < 65536 && net.ParseIP(host) != nil {
					k.Outbound = ir.Address{Host: host, Port: p}
				}
			}
		}
	} else {
		k.Outbound = ir.Address{}
	}
	return k
}

// NodeHash maps every node to its group, so all proxies of a group share one
// snapshot in the cache.
type NodeHash struct{}

// ID implements cachev3.NodeHash.
func (NodeHash) ID(node *corev3.Node) string { return GroupOf(node).String() }
