package translate

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/bulwarkmesh/bulwark/xds/internal/golden"
	"github.com/bulwarkmesh/bulwark/xds/internal/protoyaml"
	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// TestGolden translates hand-written IR (testdata/<case>.in.yaml) on its own,
// without resolve: <case>.{listeners,routes,clusters,endpoints}.yaml, and
// <case>.errors.yaml when services were left out.
func TestGolden(t *testing.T) {
	dir := golden.Open("testdata")
	for _, name := range dir.Cases(t) {
		t.Run(name, func(t *testing.T) {
			x, err := ir.Decode(dir.Input(t, name))
			require.NoError(t, err)
			r, terr := Translate(x)
			require.NotNil(t, r, "translate: %v", terr)
			require.NoError(t, Check(r), "every golden output passes Check")
			check(t, dir, name+".listeners.yaml", r.Listeners)
			check(t, dir, name+".routes.yaml", r.Routes)
			check(t, dir, name+".clusters.yaml", r.Clusters)
			check(t, dir, name+".endpoints.yaml", r.Endpoints)
			if terr != nil {
				var buf bytes.Buffer
				enc := yaml.NewEncoder(&buf)
				enc.SetIndent(2)
				require.NoError(t, enc.Encode(splitJoined(terr)))
				dir.Check(t, name+".errors.yaml", buf.Bytes())
			}
			dir.Done(name)
		})
	}
	dir.Stale(t)
}

func check[T proto.Message](t *testing.T, dir *golden.Dir, name string, ms []T) {
	t.Helper()
	out, err := protoyaml.List(ms)
	require.NoError(t, err)
	dir.Check(t, name, out)
}

// splitJoined lists the errors an errors.Join holds.
func splitJoined(err error) []string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}
