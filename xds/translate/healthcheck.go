package translate

import (
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// healthChecks maps healthCheck to an active health check (Envoy only;
// proxyless gRPC does no active checks). Expected statuses become
// one-status ranges [s, s+1), sorted.
func healthChecks(s *ir.Service) []*corev3.HealthCheck {
	hc := s.Cluster.HealthCheck
	if hc == nil {
		return nil
	}
	out := &corev3.HealthCheck{}
	if hc.Interval != nil {
		out.Interval = dur(*hc.Interval)
	}
	if hc.Timeout != nil {
		out.Timeout = dur(*hc.Timeout)
	}
	if hc.UnhealthyThreshold != nil {
		out.UnhealthyThreshold = u32(*hc.UnhealthyThreshold)
	}
	if hc.HealthyThreshold != nil {
		out.HealthyThreshold = u32(*hc.HealthyThreshold)
	}
	h2 := s.Protocol == policies.ProtocolHTTP2 || s.Protocol == policies.ProtocolGRPC
	switch {
	case hc.HTTP != nil:
		probe := &corev3.HealthCheck_HttpHealthCheck{Path: hc.HTTP.Path}
		if h2 {
			probe.CodecClientType = typev3.CodecClientType_HTTP2
		}
		statuses := slices.Clone(hc.HTTP.ExpectedStatuses)
		slices.Sort(statuses)
		for _, st := range slices.Compact(statuses) {
			probe.ExpectedStatuses = append(probe.ExpectedStatuses, &typev3.Int64Range{Start: int64(st), End: int64(st) + 1})
		}
		out.HealthChecker = &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: probe}
	case hc.GRPC != nil:
		out.HealthChecker = &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: &corev3.HealthCheck_GrpcHealthCheck{ServiceName: hc.GRPC.ServiceName}}
	case hc.TCP != nil:
		out.HealthChecker = &corev3.HealthCheck_TcpHealthCheck_{TcpHealthCheck: &corev3.HealthCheck_TcpHealthCheck{}}
	}
	return []*corev3.HealthCheck{out}
}
