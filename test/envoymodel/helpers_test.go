package envoymodel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testNode  = "envoy-1"
	waitLimit = 30 * time.Second
)

type quietLog struct{}

func (quietLog) Debugf(string, ...any) {}
func (quietLog) Infof(string, ...any)  {}
func (quietLog) Warnf(string, ...any)  {}
func (quietLog) Errorf(string, ...any) {}

// wireReq is one request as it arrived at the server, before the server touched it.
type wireReq struct {
	stream int
	sotw   *discoverygrpc.DiscoveryRequest
	delta  *discoverygrpc.DeltaDiscoveryRequest
}

// xdsServer is go-control-plane's ADS server and snapshot cache on a loopback port,
// with a stream interceptor that records every request off the wire. The server is
// ordered, as Bulwark's is: one response channel per stream, so a snapshot's CDS
// reaches the proxy before its EDS (unordered, EDS can overtake CDS and the new
// cluster's re-request finds nothing newer to answer with).
type xdsServer struct {
	cache cachev3.SnapshotCache
	addr  string

	mu      sync.Mutex
	streams int
	reqs    []wireReq
}

type recordingStream struct {
	grpc.ServerStream
	x  *xdsServer
	id int
}

func (s *recordingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	s.x.mu.Lock()
	defer s.x.mu.Unlock()
	r := wireReq{stream: s.id}
	switch v := m.(type) {
	case *discoverygrpc.DiscoveryRequest:
		r.sotw = proto.Clone(v).(*discoverygrpc.DiscoveryRequest)
	case *discoverygrpc.DeltaDiscoveryRequest:
		r.delta = proto.Clone(v).(*discoverygrpc.DeltaDiscoveryRequest)
	}
	s.x.reqs = append(s.x.reqs, r)
	return nil
}

func startServer(t testing.TB) *xdsServer { return startServerRecording(t, true) }

// startServerRecording is startServer; without record, no request is kept.
func startServerRecording(t testing.TB, record bool) *xdsServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	x := &xdsServer{cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, quietLog{})}
	var opts []grpc.ServerOption
	if record {
		opts = append(opts, grpc.StreamInterceptor(
			func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				x.mu.Lock()
				x.streams++
				id := x.streams
				x.mu.Unlock()
				return h(srv, &recordingStream{ServerStream: ss, x: x, id: id})
			}))
	}
	gs := grpc.NewServer(opts...)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(ctx, x.cache, nil, sotwv3.WithOrderedADS()))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	x.addr = lis.Addr().String()
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); cancel(); <-served })
	return x
}

func (x *xdsServer) requests() []wireReq {
	x.mu.Lock()
	defer x.mu.Unlock()
	return append([]wireReq(nil), x.reqs...)
}

// resources of one snapshot, by type URL.
type resources map[string][]types.Resource

// contentVersion is the version a content-versioned control plane (Bulwark's §8)
// gives a type: a hash of its resources.
func contentVersion(t testing.TB, items []types.Resource) string {
	t.Helper()
	byName := map[string][]byte{}
	names := []string{}
	for _, r := range items {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		n := cachev3.GetResourceName(r)
		byName[n], names = b, append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		h.Write([]byte(n))
		h.Write(byName[n])
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// setContent publishes res with content-hash versions per type.
func (x *xdsServer) setContent(t testing.TB, res resources) map[string]string {
	t.Helper()
	versions := map[string]string{}
	s := &cachev3.Snapshot{}
	for typ, items := range res {
		v := contentVersion(t, items)
		versions[typ] = v
		s.Resources[cachev3.GetResponseType(typ)] = cachev3.NewResources(v, items)
	}
	x.set(t, s)
	return versions
}

// setVersion publishes res with one explicit version for every type.
func (x *xdsServer) setVersion(t testing.TB, version string, res resources) {
	t.Helper()
	s, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		t.Fatal(err)
	}
	x.set(t, s)
}

func (x *xdsServer) set(t testing.TB, s *cachev3.Snapshot) {
	t.Helper()
	if err := x.cache.SetSnapshot(context.Background(), testNode, s); err != nil {
		t.Fatal(err)
	}
}

var adsSource = &corev3.ConfigSource{
	ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	ResourceApiVersion:    corev3.ApiVersion_V3,
}

func edsCluster(name string, connect time.Duration) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(connect),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource},
	}
}

func assignment(name string, ports ...uint32) *endpointv3.ClusterLoadAssignment {
	la := &endpointv3.LocalityLbEndpoints{}
	for _, p := range ports {
		la.LbEndpoints = append(la.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p},
				}}},
			}},
		})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{la}}
}

func routeConfig(name, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: cluster, Domains: []string{cluster},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
		}},
	}}}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

func httpListener(name, route, statPrefix string, port uint32) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource: adsSource, RouteConfigName: route,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
		}},
	}
	return &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
		}}}},
	}
}

// baseResources is one service behind one outbound listener, as Bulwark serves Envoy.
func baseResources(connect time.Duration) resources {
	return resources{
		typeCluster:  {edsCluster("payments", connect)},
		typeEndpoint: {assignment("payments", 8080)},
		typeListener: {httpListener("outbound", "outbound", "outbound", 15001)},
		typeRoute:    {routeConfig("outbound", "payments")},
	}
}

func newModel(t *testing.T, x *xdsServer, opts Options) *Envoy {
	t.Helper()
	opts.NodeID, opts.NodeCluster = testNode, "checkout"
	e := New(x.addr, opts)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func waitFor(t *testing.T, e *Envoy, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := e.Wait(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v (warming clusters %v, listeners %v, stats %+v, stream err %v)",
			what, err, e.WarmingClusters(), e.WarmingListeners(), e.Stats(), e.Err())
	}
}

// eventually polls cond, for conditions on the server's side of the wire.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// warmWith waits until the model serves listener "outbound" and nothing warms.
func warmWith(t *testing.T, e *Envoy) {
	t.Helper()
	waitFor(t, e, "all warm", func() bool {
		c := e.Config()
		_, ok := c.Listeners["outbound"]
		_, r := c.Routes["outbound"]
		return ok && r && e.AllWarm()
	})
}

func connectTimeout(c Config, name string) time.Duration {
	r, ok := c.Clusters[name]
	if !ok {
		return 0
	}
	return r.Message.(*clusterv3.Cluster).GetConnectTimeout().AsDuration()
}

var modes = []struct {
	name string
	mode Mode
}{{"sotw", SotW}, {"delta", Delta}}
