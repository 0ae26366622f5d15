package protoyaml

import (
	"flag"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"
)

var _ = flag.Bool("update", false, "regenerate golden files (none in this package)")

func TestListQuotesWhatYAMLWouldMisread(t *testing.T) {
	v, err := structpb.NewStruct(map[string]any{"b": "true", "a": "123", "c": "5xx", "d": 1.5, "e": []any{"on", "x: y"}})
	require.NoError(t, err)
	out, err := List([]*structpb.Struct{v})
	require.NoError(t, err)
	require.Equal(t, `- a: "123"
  b: "true"
  c: 5xx
  d: 1.5
  e:
    - "on"
    - 'x: y'
`, string(out))
}
