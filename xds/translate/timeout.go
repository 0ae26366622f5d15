package translate

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// applyConnectTimeout sets timeouts.connect on the cluster. gRPC ignores it;
// it is set for both flavors so the clusters read the same.
func applyConnectTimeout(c *clusterv3.Cluster, cl *ir.ClusterPolicy) {
	if cl.ConnectTimeout != nil {
		c.ConnectTimeout = dur(*cl.ConnectTimeout)
	}
}

// applyRouteTimeouts maps timeouts.request and timeouts.idle. Envoy: the
// route timeout (Envoy's default of 15s applies when unset) and the idle
// timeout; 0s, a timeout switched off, is sent as it is: Envoy reads a
// zero route or idle timeout as none. gRPC: max_stream_duration, the only
// deadline it reads, left out when the timeout is off (no deadline); it has
// no idle timeout.
func applyRouteTimeouts(flavor ir.Flavor, a *routev3.RouteAction, r *ir.Route) {
	if flavor == ir.FlavorGRPC {
		if r.Timeout != nil && *r.Timeout > 0 {
			a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: dur(*r.Timeout)}
		}
		return
	}
	if r.Timeout != nil {
		a.Timeout = dur(*r.Timeout)
	}
	if r.IdleTimeout != nil {
		a.IdleTimeout = dur(*r.IdleTimeout)
	}
}

func dur(d policies.Duration) *durationpb.Duration { return durationpb.New(d.D()) }
