package limits

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// Each limit refuses with InvalidArgument and the reason counted; a client
// is logged once however often it is refused.
func TestAdmission(t *testing.T) {
	var logs bytes.Buffer
	counted := map[string]int{}
	a := &Admission{Log: slog.New(slog.NewTextHandler(&logs, nil)), Refused: func(r string) { counted[r]++ }}
	node := &corev3.Node{Id: "n", Cluster: "checkout"}

	require.NoError(t, a.CheckNode(node))
	for typ := range ServedTypes {
		require.NoError(t, a.CheckType(node, typ))
	}
	require.Len(t, ServedTypes, 4)
	require.True(t, ServedTypes[resourcev3.RouteType])

	for range 3 {
		err := a.CheckType(node, "type.googleapis.com/garbage")
		require.Equal(t, codes.InvalidArgument, status.Code(err))
	}
	big, err := structpb.NewStruct(map[string]any{"blob": strings.Repeat("x", MaxNodeMetadataBytes)})
	require.NoError(t, err)
	for _, tc := range []struct {
		node   *corev3.Node
		reason string
	}{
		{&corev3.Node{Id: strings.Repeat("i", MaxNodeIDBytes+1)}, RefusedNodeID},
		{&corev3.Node{Id: "c", Cluster: strings.Repeat("c", MaxNodeClusterBytes+1)}, RefusedCluster},
		{&corev3.Node{Id: "m", Metadata: big}, RefusedMetadata},
	} {
		err := a.CheckNode(tc.node)
		require.Equal(t, codes.InvalidArgument, status.Code(err), tc.reason)
	}
	require.Equal(t, map[string]int{RefusedType: 3, RefusedNodeID: 1, RefusedCluster: 1, RefusedMetadata: 1}, counted)
	require.Equal(t, 4, strings.Count(logs.String(), "xDS request refused"), "one line per client: n, the long id, c, m")
}
