package main

import (
	"encoding/json"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3" // typed_extension_protocol_options
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"
)

// The bootstraps the demo writes: gRPC's own parser accepts the proxyless
// one (the demo's callers use it, see startTestDemo), and the Envoy one
// decodes strictly into Envoy's Bootstrap and passes its validation, as
// node checkout with ADS to the demo's xDS address.
func TestBootstrapsAreValid(t *testing.T) {
	grpcJSON, envoyYAML := bootstraps("127.0.0.1:18100", ".bulwark/demo")
	_, err := xds.NewXDSResolverWithConfigForTesting([]byte(grpcJSON))
	require.NoError(t, err)
	var g struct {
		XDSServers []struct {
			URI string `json:"server_uri"`
		} `json:"xds_servers"`
		Node struct {
			Cluster string `json:"cluster"`
		} `json:"node"`
	}
	require.NoError(t, json.Unmarshal([]byte(grpcJSON), &g))
	require.Equal(t, "127.0.0.1:18100", g.XDSServers[0].URI)
	require.Equal(t, "checkout", g.Node.Cluster)

	var doc any
	require.NoError(t, yaml.Unmarshal([]byte(envoyYAML), &doc))
	js, err := json.Marshal(doc)
	require.NoError(t, err)
	var b bootstrapv3.Bootstrap
	require.NoError(t, protojson.Unmarshal(js, &b), "unknown or mistyped field")
	require.NoError(t, b.ValidateAll())
	require.Equal(t, "checkout", b.GetNode().GetCluster())
	require.NotNil(t, b.GetDynamicResources().GetLdsConfig().GetAds())
	addr := b.GetStaticResources().GetClusters()[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	require.Equal(t, "127.0.0.1", addr.GetAddress())
	require.Equal(t, uint32(18100), addr.GetPortValue())
}
