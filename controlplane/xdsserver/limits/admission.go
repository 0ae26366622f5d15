// Package limits bounds what an xDS client can make the server hold: the
// fields of its node, the type URLs it may ask for, and how long a response
// may wait for it to read. Every refusal is logged once per client and
// counted by reason.
//
// It imports only gRPC and go-control-plane's protos; controlplane/xdsserver
// uses it.
package limits

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
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

// ServedTypes are the type URLs a client may ask for.
var ServedTypes = map[string]bool{
	resourcev3.ListenerType: true,
	resourcev3.RouteType:    true,
	resourcev3.ClusterType:  true,
	resourcev3.EndpointType: true,
}

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

// Admission refuses requests beyond the limits, logging each client once.
// Log and Refused are set before use; Refused counts a refusal by reason.
type Admission struct {
	Log     *slog.Logger
	Refused func(reason string)

	mu     sync.Mutex
	logged map[string]bool
}

// CheckNode refuses a node beyond the limits.
func (a *Admission) CheckNode(node *corev3.Node) error {
	switch {
	case len(node.GetId()) > MaxNodeIDBytes:
		return a.Refuse(RefusedNodeID, node, fmt.Sprintf("node.id is %d bytes; at most %d are accepted", len(node.GetId()), MaxNodeIDBytes))
	case len(node.GetCluster()) > MaxNodeClusterBytes:
		return a.Refuse(RefusedCluster, node, fmt.Sprintf("node.cluster is %d bytes; at most %d are accepted (it names a service, a DNS label)", len(node.GetCluster()), MaxNodeClusterBytes))
	}
	if md := node.GetMetadata(); md != nil {
		if n := proto.Size(md); n > MaxNodeMetadataBytes {
			return a.Refuse(RefusedMetadata, node, fmt.Sprintf("node.metadata is %d bytes encoded; at most %d are accepted", n, MaxNodeMetadataBytes))
		}
	}
	return nil
}

// CheckType refuses a type URL Bulwark does not serve.
func (a *Admission) CheckType(node *corev3.Node, typeURL string) error {
	if ServedTypes[typeURL] {
		return nil
	}
	shown := typeURL
	if len(shown) > 120 {
		shown = shown[:120] + "..."
	}
	return a.Refuse(RefusedType, node, fmt.Sprintf("type URL %q is not served: Bulwark serves listeners, routes, clusters and endpoints (envoy.config.*.v3)", shown))
}

// Refuse counts a refusal, logs it once per client, and returns the error
// that ends the client's stream.
func (a *Admission) Refuse(reason string, node *corev3.Node, msg string) error {
	if a.Refused != nil {
		a.Refused(reason)
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
	if first && a.Log != nil {
		a.Log.Warn("xDS request refused (logged once per client)", "node", id, "reason", reason, "detail", msg)
	}
	return status.Error(codes.InvalidArgument, msg)
}

// Stalled counts and logs (once per address) a connection closed because
// its stream did not read.
func (a *Admission) Stalled(addr string, after time.Duration) {
	if a.Refused != nil {
		a.Refused(RefusedStalled)
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
	if first && a.Log != nil {
		a.Log.Warn("xDS connection closed: a response waited for the proxy to read it longer than the send timeout (logged once per address)", "peer", addr, "timeout", after)
	}
}
