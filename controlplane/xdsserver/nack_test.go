package xdsserver

import (
	"fmt"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/internal/meshtest"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver/seal"
)

// nackEnv is a cache with one group's snapshot and helpers to open watches
// as a node on a stream.
type nackEnv struct {
	t        *testing.T
	g        *Cache
	group    string
	versions map[string]string
	eds      []string // load assignment names of the snapshot
}

func newNackEnv(t *testing.T, services int) *nackEnv {
	res := meshtest.RenderMesh(t, services)
	snap, versions, err := seal.NewSnapshot(res)
	require.NoError(t, err)
	g := NewCache()
	group := g.hash.ID(envoyNode("n"))
	require.NoError(t, g.SetSnapshot(t.Context(), group, snap))
	e := &nackEnv{t: t, g: g, group: group, versions: versions}
	for _, c := range res.Endpoints {
		e.eds = append(e.eds, c.GetClusterName())
	}
	return e
}

func envoyNode(id string) *corev3.Node {
	return &corev3.Node{Id: id, Cluster: "svc-00000", UserAgentName: "envoy"}
}

// watch opens a watch for names as node on stream; it reports whether it
// was answered at once.
func (e *nackEnv) watch(node string, streamID int64, version string, names ...string) bool {
	e.t.Helper()
	req := &discoveryv3.DiscoveryRequest{Node: envoyNode(node), TypeUrl: resourcev3.EndpointType, VersionInfo: version, ResourceNames: names}
	e.g.NoteRequest(req, nil, streamID)
	ch := make(chan cachev3.Response, 1)
	cancel, err := e.g.CreateWatch(req, stream.NewSotwSubscription(names, false), ch)
	require.NoError(e.t, err)
	defer cancel()
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A rejection holds back only what was rejected. A client that asks for
// the load assignments one at a time (gRPC C-core does so per channel) and
// rejected the first still gets the next; once it has rejected both, the
// same request waits; a request for less waits too.
func TestRejectionHoldsBackOnlyWhatWasRejected(t *testing.T) {
	e := newNackEnv(t, 3)
	v := e.versions[resourcev3.EndpointType]
	a, b := e.eds[0], e.eds[1]

	e.g.Reject("n", 1, e.group, resourcev3.EndpointType, v, []string{a})
	require.False(t, e.watch("n", 1, "", a), "the rejected assignment is not sent again")
	require.True(t, e.watch("n", 1, "", a, b), "a request that adds a name is answered")
	require.True(t, e.watch("n", 1, "", a, b, "no-such-cluster"), "still: b has not been rejected")

	e.g.Reject("n", 1, e.group, resourcev3.EndpointType, v, []string{a, b})
	require.False(t, e.watch("n", 1, "", a, b), "both rejected: held")
	require.False(t, e.watch("n", 1, "", b), "a subset of what was rejected: held")
	require.False(t, e.watch("n", 1, "", a, b, "no-such-cluster"), "a name that does not exist offers nothing new")
	require.True(t, e.watch("m", 1, "", a, b), "another node is not affected")
}

// The rule holds across reconnects for a proxy that keeps a config (its
// request carries the version it accepted), while a new process with the
// same node id, which has nothing, gets the current version once; a NACK
// on its own stream then holds it too.
func TestRejectionAcrossStreams(t *testing.T) {
	e := newNackEnv(t, 2)
	v := e.versions[resourcev3.EndpointType]
	all := e.eds

	e.g.Reject("n", 1, e.group, resourcev3.EndpointType, v, all)
	require.False(t, e.watch("n", 2, "accepted-before", all...), "a reconnected proxy keeps its last good config")
	require.False(t, e.watch("n", 1, "", all...), "the stream that rejected it")
	require.True(t, e.watch("n", 3, "", all...), "a new process has nothing: it is answered")
	e.g.Reject("n", 3, e.group, resourcev3.EndpointType, v, all)
	require.False(t, e.watch("n", 3, "", all...), "and held once it rejected it on its stream")
}

// Rejections that no longer apply are forgotten: the next request after the
// group moved on, or Forget, drops them; their number is bounded.
func TestRejectionsAreForgottenAndBounded(t *testing.T) {
	e := newNackEnv(t, 2)
	v := e.versions[resourcev3.EndpointType]
	e.g.Reject("n", 1, e.group, resourcev3.EndpointType, v, e.eds)
	e.g.Reject("o", 1, e.group, resourcev3.EndpointType, v, e.eds)
	require.Equal(t, 2, e.g.Rejections())

	next, _, err := seal.NewSnapshot(meshtest.RenderMesh(t, 3))
	require.NoError(t, err)
	require.NoError(t, e.g.SetSnapshot(t.Context(), e.group, next))
	require.True(t, e.watch("n", 1, "accepted-before", e.eds...), "a new version goes out")
	require.Equal(t, 1, e.g.Rejections(), "the request dropped n's record")
	e.g.Forget()
	require.Zero(t, e.g.Rejections(), "Forget dropped o's")

	old := maxRejections
	maxRejections = 5
	t.Cleanup(func() { maxRejections = old })
	for i := range 20 {
		e.g.Reject(string(rune('a'+i)), 1, e.group, resourcev3.EndpointType, "x", nil)
	}
	require.Equal(t, 5, e.g.Rejections())
}

// A node that rejected a version for every name and then for a list of
// names (or the other way round) is not sent that version again for every
// name: the two kinds of rejection add up.
func TestWildcardAndNamedRejectionsAddUp(t *testing.T) {
	for _, order := range []string{"wildcard first", "named first"} {
		t.Run(order, func(t *testing.T) {
			e := newNackEnv(t, 2)
			v := e.versions[resourcev3.EndpointType]
			answered := func() bool {
				req := &discoveryv3.DiscoveryRequest{Node: envoyNode("n"), TypeUrl: resourcev3.EndpointType, VersionInfo: "accepted-before"}
				e.g.NoteRequest(req, nil, 1)
				ch := make(chan cachev3.Response, 1)
				cancel, err := e.g.CreateWatch(req, stream.NewSotwSubscription(nil, true), ch)
				require.NoError(t, err)
				defer cancel()
				select {
				case <-ch:
					return true
				default:
					return false
				}
			}
			if order == "wildcard first" {
				e.g.Reject("n", 1, e.group, resourcev3.EndpointType, v, nil)
				e.g.Reject("n", 2, e.group, resourcev3.EndpointType, v, []string{e.eds[0]})
			} else {
				e.g.Reject("n", 2, e.group, resourcev3.EndpointType, v, []string{e.eds[0]})
				e.g.Reject("n", 1, e.group, resourcev3.EndpointType, v, nil)
			}
			require.False(t, answered(), "the rejection for every name holds")
		})
	}
}

// A rejection that names more than maxRejectedNames resources covers
// every name, so a record never grows with the names a client sends.
func TestLongRejectionsCoverEveryName(t *testing.T) {
	e := newNackEnv(t, 2)
	v := e.versions[resourcev3.EndpointType]
	names := make([]string, maxRejectedNames+1)
	for i := range names {
		names[i] = fmt.Sprintf("no-such-%d", i)
	}
	e.g.Reject("n", 1, e.group, resourcev3.EndpointType, v, names)
	require.False(t, e.watch("n", 1, "accepted-before", e.eds...), "covered, though none of these names was listed")
	e.g.mu.Lock()
	require.Nil(t, e.g.rejected["n"][resourcev3.EndpointType].names)
	e.g.mu.Unlock()
}
