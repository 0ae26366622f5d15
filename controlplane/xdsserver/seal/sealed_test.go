package seal

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bulwarkmesh/bulwark/controlplane/internal/meshtest"
)

// TestSealedResourcesServeTheSameBytes checks that a sealed snapshot answers
// SotW and delta watches with exactly the encoding of the translated
// resources, names included, without encoding them again.
func TestSealedResourcesServeTheSameBytes(t *testing.T) {
	res := meshtest.RenderMesh(t, 3)
	snap, versions, err := NewSnapshot(res)
	require.NoError(t, err)
	plain := map[string]map[string]proto.Message{}
	for typ, items := range res.ByType() {
		plain[typ] = map[string]proto.Message{}
		for _, r := range items {
			plain[typ][cachev3.GetResourceName(r)] = r
		}
	}
	opts := proto.MarshalOptions{Deterministic: true}
	for _, typ := range TypeURLs {
		require.Equal(t, versions[typ], snap.GetVersion(typ))
		got := snap.GetResources(typ)
		require.Len(t, got, len(plain[typ]), typ)

		// SotW: every resource of the response is the original's encoding.
		resp := pushOnce(t, snap, typ)
		require.Equal(t, versions[typ], resp.GetVersionInfo())
		require.Len(t, resp.GetResources(), len(plain[typ]))
		for _, a := range resp.GetResources() {
			m, err := a.UnmarshalNew()
			require.NoError(t, err)
			orig := plain[typ][cachev3.GetResourceName(m)]
			require.NotNil(t, orig, "a resource the translation did not produce")
			require.True(t, proto.Equal(orig, m))
			want, err := opts.Marshal(orig)
			require.NoError(t, err)
			require.Equal(t, want, a.GetValue())
		}
	}

	// Delta: the version map hashes the sealed bytes; responses decode.
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	require.NoError(t, cache.SetSnapshot(t.Context(), "n", snap))
	for _, typ := range TypeURLs {
		ch := make(chan cachev3.DeltaResponse, 1)
		req := &discoveryv3.DeltaDiscoveryRequest{Node: &corev3.Node{Id: "n"}, TypeUrl: typ}
		_, err := cache.CreateDeltaWatch(req, stream.NewDeltaSubscription(nil, nil, nil, true), ch)
		require.NoError(t, err)
		out, err := (<-ch).GetDeltaDiscoveryResponse()
		require.NoError(t, err)
		require.Len(t, out.GetResources(), len(plain[typ]))
		for _, r := range out.GetResources() {
			orig := plain[typ][r.GetName()]
			require.NotNil(t, orig, r.GetName())
			m, err := anypb.UnmarshalNew(r.GetResource(), proto.UnmarshalOptions{})
			require.NoError(t, err)
			require.True(t, proto.Equal(orig, m))
			require.NotEmpty(t, r.GetVersion())
		}
	}
}

// TestSealedMarshalAppendsToABuffer checks the other marshal paths: into a
// caller's buffer the bytes are appended, and reflection sees the message.
func TestSealedMarshalAppendsToABuffer(t *testing.T) {
	res := meshtest.RenderMesh(t, 1)
	c := res.Clusters[0]
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	require.NoError(t, err)
	s := seal(c, c.GetName(), raw)
	out, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend([]byte("prefix"), s)
	require.NoError(t, err)
	require.Equal(t, append([]byte("prefix"), raw...), out)
	require.Equal(t, raw, []byte(s.raw), "appending must not touch the sealed bytes")
	require.Equal(t, proto.Size(c), proto.Size(s))
	require.Equal(t, c.GetName(), cachev3.GetResourceName(s))
	cla := seal(res.Endpoints[0], res.Endpoints[0].GetClusterName(), nil)
	require.Equal(t, res.Endpoints[0].GetClusterName(), cachev3.GetResourceName(cla))
}

// pushOnce answers one wildcard SotW watch from snap with go-control-plane's own
// cache, as a stream would be answered.
func pushOnce(tb testing.TB, snap *cachev3.Snapshot, typeURL string) *discoveryv3.DiscoveryResponse {
	tb.Helper()
	cache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	node := &corev3.Node{Id: "n"}
	if err := cache.SetSnapshot(tb.Context(), "n", snap); err != nil {
		tb.Fatal(err)
	}
	ch := make(chan cachev3.Response, 1)
	req := &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typeURL}
	sub := stream.NewSotwSubscription(nil, true)
	if _, err := cache.CreateWatch(req, sub, ch); err != nil {
		tb.Fatal(err)
	}
	out, err := (<-ch).GetDiscoveryResponse()
	if err != nil {
		tb.Fatal(err)
	}
	return out
}
