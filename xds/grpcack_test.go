package xds

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdsgrpc "google.golang.org/grpc/xds"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/bulwarkmesh/bulwark/xds/internal/golden"
	"github.com/bulwarkmesh/bulwark/xds/ir"
	"github.com/bulwarkmesh/bulwark/xds/resolve"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// TestGoldenGRPCOutputsAreACKedByGRPC serves every gRPC golden output to
// gRPC-Go's own xDS client and requires it to accept (ACK) every listener,
// route configuration, cluster and load assignment: the rules Check
// enforces are the ones gRPC applies, and nothing else trips it.
func TestGoldenGRPCOutputsAreACKedByGRPC(t *testing.T) {
	type input struct {
		name string
		x    *ir.Xds
	}
	var inputs []input
	dir := golden.Open("testdata")
	for _, name := range dir.Cases(t) {
		c := loadCase(t, dir.Input(t, name))
		x, _ := resolve.Resolve(c.set, ir.FlavorGRPC, c.source, resolve.Options{})
		require.NotNil(t, x)
		inputs = append(inputs, input{name, x})
	}
	irs, err := filepath.Glob(filepath.Join("translate", "testdata", "*"+golden.InputSuffix))
	require.NoError(t, err)
	tdir := golden.Open(filepath.Join("translate", "testdata"))
	for _, path := range irs {
		name := strings.TrimSuffix(filepath.Base(path), golden.InputSuffix)
		x, err := ir.Decode(tdir.Input(t, name))
		require.NoError(t, err)
		if x.Flavor == ir.FlavorGRPC {
			inputs = append(inputs, input{"translate/" + name, x})
		}
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			r, _ := translate.Translate(in.x)
			require.NoError(t, translate.Check(r))
			if len(r.Listeners) == 0 {
				return // nothing to dial
			}
			nacks, err := serveToGRPC(t, r)
			require.Empty(t, nacks, "gRPC rejected the resources")
			require.NoError(t, err)
		})
	}
}

// TestGRPCClientNACKsWhatCheckRejects proves the test above can fail: a
// retry policy with num_retries 0, which Check refuses, is NACKed by gRPC.
func TestGRPCClientNACKsWhatCheckRejects(t *testing.T) {
	c := loadCase(t, golden.Open("testdata").Input(t, "retries"))
	x, _ := resolve.Resolve(c.set, ir.FlavorGRPC, c.source, resolve.Options{})
	r, err := translate.Translate(x)
	require.NoError(t, err)
	rc := proto.Clone(r.Routes[0]).(*routev3.RouteConfiguration)
	rc.VirtualHosts[0].Routes[0].GetRoute().RetryPolicy = &routev3.RetryPolicy{RetryOn: "unavailable", NumRetries: wrapperspb.UInt32(0)}
	r.Routes[0] = rc
	require.ErrorContains(t, translate.Check(r), "num_retries must be at least 1")
	nacks, _ := serveToGRPC(t, r)
	require.NotEmpty(t, nacks)
	require.Contains(t, nacks[0], "num_retries")
}

// acks records what one gRPC client asked for and whether it accepted it.
type acks struct {
	mu        sync.Mutex
	requested map[string]map[string]bool // type URL → resource names
	last      map[string]*discoveryv3.DiscoveryRequest
	lastAt    time.Time
	nacks     []string
}

func (a *acks) onRequest(_ int64, req *discoveryv3.DiscoveryRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.requested[req.GetTypeUrl()] == nil {
		a.requested[req.GetTypeUrl()] = map[string]bool{}
	}
	for _, n := range req.GetResourceNames() {
		a.requested[req.GetTypeUrl()][n] = true
	}
	if d := req.GetErrorDetail(); d != nil {
		a.nacks = append(a.nacks, fmt.Sprintf("%s: %s", req.GetTypeUrl(), d.GetMessage()))
	}
	a.last[req.GetTypeUrl()] = req
	a.lastAt = time.Now()
	return nil
}

// settled says what is still missing: a resource never asked for, a type
// whose last request does not acknowledge the snapshot, recent traffic.
func (a *acks) settled(want map[string][]types.Resource, version string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for typ, rs := range want {
		for _, r := range rs {
			if name := cachev3.GetResourceName(r); !a.requested[typ][name] {
				return fmt.Errorf("%s %q not requested yet", typ, name)
			}
		}
		if len(rs) > 0 && a.last[typ].GetVersionInfo() != version {
			return fmt.Errorf("%s not acknowledged yet", typ)
		}
	}
	if time.Since(a.lastAt) < 200*time.Millisecond {
		return fmt.Errorf("requests still coming")
	}
	return nil
}

// serveToGRPC serves r to gRPC's xDS client, dialing every listener, until
// it has asked for and acknowledged every resource or rejected one. It
// returns the rejections, and an error when gRPC did not settle.
func serveToGRPC(t *testing.T, r *translate.Resources) ([]string, error) {
	t.Helper()
	const version, nodeID = "golden", "golden-node"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	snap, err := cachev3.NewSnapshot(version, r.ByType())
	require.NoError(t, err)
	require.NoError(t, cache.SetSnapshot(ctx, nodeID, snap))
	rec := &acks{requested: map[string]map[string]bool{}, last: map[string]*discoveryv3.DiscoveryRequest{}, lastAt: time.Now()}
	srv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, serverv3.NewServer(ctx, cache, serverv3.CallbackFuncs{StreamRequestFunc: rec.onRequest}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "cluster": "golden"}
	}`, lis.Addr().String(), nodeID)
	builder, err := xdsgrpc.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	require.NoError(t, err)
	for _, l := range r.Listeners {
		cc, err := grpc.NewClient("xds:///"+l.GetName(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(builder))
		require.NoError(t, err)
		defer cc.Close()
		cc.Connect()
	}

	want := r.ByType()
	deadline := time.Now().Add(15 * time.Second)
	for {
		rec.mu.Lock()
		nacks := append([]string(nil), rec.nacks...)
		rec.mu.Unlock()
		if len(nacks) > 0 {
			sort.Strings(nacks)
			return nacks, nil
		}
		err := rec.settled(want, version)
		if err == nil {
			return nil, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("gRPC did not acknowledge everything: %w", err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
