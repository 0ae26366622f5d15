package xdsserver

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
)

// go-control-plane numbers state-of-the-world and delta streams
// separately, both from 1. A SotW stream and a delta stream with the same
// number are two streams: each proxy keeps its own status, and closing one
// removes only its proxy.
func TestSotWAndDeltaStreamsWithTheSameNumber(t *testing.T) {
	tr := NewTracker("r", NewCache(), metrics.New(TypeLabels()...))
	ctx := t.Context()
	require.NoError(t, tr.OnStreamOpen(ctx, 1, ""))
	require.NoError(t, tr.OnDeltaStreamOpen(ctx, 1, ""))
	sotw := &corev3.Node{Id: "sotw-1", Cluster: "checkout", UserAgentName: "envoy"}
	delta := &corev3.Node{Id: "delta-1", Cluster: "checkout", UserAgentName: "envoy"}
	req := &discoveryv3.DiscoveryRequest{Node: sotw, TypeUrl: resourcev3.ClusterType}
	require.NoError(t, tr.OnStreamRequest(1, req))
	dreq := &discoveryv3.DeltaDiscoveryRequest{Node: delta, TypeUrl: resourcev3.ClusterType}
	require.NoError(t, tr.OnStreamDeltaRequest(1, dreq))
	tr.OnStreamResponse(ctx, 1, req, &discoveryv3.DiscoveryResponse{VersionInfo: "v1", Nonce: "1"})
	tr.OnStreamDeltaResponse(1, dreq, &discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: "d1", Nonce: "1"})

	s, ok := tr.Proxy("sotw-1")
	require.True(t, ok)
	require.Equal(t, "v1", s.Types["clusters"].Sent)
	d, ok := tr.Proxy("delta-1")
	require.True(t, ok)
	require.Equal(t, "d1", d.Types["clusters"].Sent)
	require.Equal(t, "delta", d.Protocol)

	tr.OnStreamClosed(1, sotw)
	_, ok = tr.Proxy("sotw-1")
	require.False(t, ok, "the closed SotW stream's proxy is gone")
	_, ok = tr.Proxy("delta-1")
	require.True(t, ok, "the delta stream numbered 1 is still open")
	tr.OnDeltaStreamClosed(1, delta)
	require.Empty(t, tr.Proxies())
}
