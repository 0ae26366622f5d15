package xdsserver

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Limits on what an xDS client may send. The xDS port is open to any client
// that can reach it (mTLS aside), so everything a client chooses is bounded:
// a node id becomes an etcd key and a status entry, a type URL a watch (and
// go-control-plane's ordered-ADS response channel holds only a few), node
// metadata is kept for the stream's life.
const (
	// MaxNodeIDBytes bounds node.id; Envoy's ids are well under 200 bytes.
	MaxNodeIDBytes = 256
	// MaxNodeClusterBytes bounds node.cluster, which names a service (a
	// DNS label of at most 63 bytes); longer values are refused.
	MaxNodeClusterBytes = 253
	// MaxNodeMetadataBytes bounds the encoded node metadata.
	MaxNodeMetadataBytes = 16 << 10
	// maxLoggedClients bounds the set of clients whose refusal was logged:
	// each client is logged once, and past this many, refusals are only
	// counted.
	maxLoggedClients = 10000
)

// Refusal reasons, the closed set of bulwark_xds_refused_total's label
// (metrics.RefusalReasons lists them too).
const (
	RefusedType     = "type"
	RefusedNodeID   = "node-id"
	RefusedCluster  = "node-cluster"
	RefusedMetadata = "node-metadata"
	RefusedOutbound = "outbound"
	// RefusedStalled: a stream did not read a response for the send
	// timeout; its connection was closed.
	RefusedStalled = "stalled"
)

// admission refuses requests beyond the limits, logging each client once.
type admission struct {
	log     *slog.Logger
	refused func(reason string)

	mu     sync.Mutex
	logged map[string]bool
}

// checkNode refuses a node beyond the limits.
func (a *admission) checkNode(node *corev3.Node) error {
	switch {
	case len(node.GetId()) > MaxNodeIDBytes:
		return a.refuse(RefusedNodeID, node, fmt.Sprintf("node.id is %d bytes; at most %d are accepted", len(node.GetId()), MaxNodeIDBytes))
	case len(node.GetCluster()) > MaxNodeClusterBytes:
		return a.refuse(RefusedCluster, node, fmt.Sprintf("node.cluster is %d bytes; at most %d are accepted (it names a service, a DNS label)", len(node.GetCluster()), MaxNodeClusterBytes))
	}
	if md := node.GetMetadata(); md != nil {
		if n := proto.Size(md); n > MaxNodeMetadataBytes {
			return a.refuse(RefusedMetadata, node, fmt.Sprintf("node.metadata is %d bytes encoded; at most %d are accepted", n, MaxNodeMetadataBytes))
		}
	}
	return nil
}

// checkType refuses a type URL Bulwark does not serve.
func (a *admission) checkType(node *corev3.Node, typeURL string) error {
	if _, ok := shortType[typeURL]; ok {
		return nil
	}
	shown := typeURL
	if len(shown) > 120 {
		shown = shown[:120] + "..."
	}
	return a.refuse(RefusedType, node, fmt.Sprintf("type URL %q is not served: Bulwark serves listeners, routes, clusters and endpoints (envoy.config.*.v3)", shown))
}

// refuse counts a refusal, logs it once per client, and returns the error
// that ends the client's stream.
func (a *admission) refuse(reason string, node *corev3.Node, msg string) error {
	if a.refused != nil {
		a.refused(reason)
	}
	id := node.GetId()
	if len(id) > MaxNodeIDBytes {
		id = id[:MaxNodeIDBytes]
	}
	a.mu.Lock()
	first := !a.logged[id] && len(a.logged) < maxLoggedClients
	if first {
		if a.logged == nil {
			a.logged = map[string]bool{}
		}
		a.logged[id] = true
	}
	a.mu.Unlock()
	if first && a.log != nil {
		a.log.Warn("xDS request refused (logged once per client)", "node", id, "reason", reason, "detail", msg)
	}
	return status.Error(codes.InvalidArgument, msg)
}

// stalled counts and logs (once per address) a connection closed because
// its stream did not read.
func (a *admission) stalled(addr string, after time.Duration) {
	if a.refused != nil {
		a.refused(RefusedStalled)
	}
	key := "addr:" + addr
	a.mu.Lock()
	first := !a.logged[key] && len(a.logged) < maxLoggedClients
	if first {
		if a.logged == nil {
			a.logged = map[string]bool{}
		}
		a.logged[key] = true
	}
	a.mu.Unlock()
	if first && a.log != nil {
		a.log.Warn("xDS connection closed: a response waited for the proxy to read it longer than the send timeout (logged once per address)", "peer", addr, "timeout", after)
	}
}
