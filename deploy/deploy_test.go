// Package deploy holds deployment files; its test checks them against the
// Envoy and gRPC bootstrap schemas.
package deploy

import (
	"encoding/json"
	"net/url"
	"os"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3" // typed_extension_protocol_options
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"gopkg.in/yaml.v3"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/xds"
)

// nopClientConn takes an xDS resolver's updates and drops them.
type nopClientConn struct{}

func (nopClientConn) UpdateState(resolver.State) error { return nil }
func (nopClientConn) ReportError(error)                {}
func (nopClientConn) NewAddress([]resolver.Address)    {}
func (nopClientConn) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{}
}

// The Envoy bootstrap decodes strictly into Envoy's Bootstrap message and
// passes its validation rules.
func TestEnvoyBootstrapIsValid(t *testing.T) {
	raw, err := os.ReadFile("envoy-bootstrap.yaml")
	require.NoError(t, err)
	var doc any
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	js, err := json.Marshal(doc)
	require.NoError(t, err)
	var b bootstrapv3.Bootstrap
	require.NoError(t, protojson.Unmarshal(js, &b), "unknown or mistyped field")
	require.NoError(t, b.ValidateAll())
	require.Equal(t, "checkout", b.GetNode().GetCluster())
	require.NotNil(t, b.GetDynamicResources().GetAdsConfig())
	require.NotNil(t, b.GetDynamicResources().GetLdsConfig().GetAds(), "LDS over ADS")
	require.NotNil(t, b.GetDynamicResources().GetCdsConfig().GetAds(), "CDS over ADS")
	addr := b.GetStaticResources().GetClusters()[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	require.Equal(t, uint32(18000), addr.GetPortValue(), "the default --xds-addr")
}

// gRPC's own xDS client accepts the proxyless bootstrap.
func TestGRPCBootstrapIsValid(t *testing.T) {
	raw, err := os.ReadFile("grpc-bootstrap.json")
	require.NoError(t, err)
	// The resolver reads the bootstrap when it is built.
	builder, err := xds.NewXDSResolverWithConfigForTesting(raw)
	require.NoError(t, err)
	r, err := builder.Build(resolver.Target{URL: url.URL{Scheme: "xds", Path: "/payments"}}, nopClientConn{}, resolver.BuildOptions{})
	require.NoError(t, err)
	r.Close()
	var b struct {
		Node struct {
			Cluster  string            `json:"cluster"`
			Locality map[string]string `json:"locality"`
		} `json:"node"`
	}
	require.NoError(t, json.Unmarshal(raw, &b))
	require.Equal(t, "checkout", b.Node.Cluster)
	require.NotEmpty(t, b.Node.Locality["zone"], "grpc-js needs node.locality")
}
