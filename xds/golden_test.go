package xds

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds/internal/golden"
	"github.com/bulwarkmesh/bulwark/xds/internal/protoyaml"
	"github.com/bulwarkmesh/bulwark/xds/ir"
	"github.com/bulwarkmesh/bulwark/xds/resolve"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// goldenCase is an input bundle and the header comments that say how to
// render it:
//
//	# source: checkout                         the calling service (default: none)
//	# register: payments i-1 10.0.0.9:9001 z2  a self-registered instance (zone optional)
type goldenCase struct {
	set    *policies.Set
	source string
}

func loadCase(t *testing.T, data []byte) goldenCase {
	t.Helper()
	rs, err := policies.DecodeAll(data)
	require.NoError(t, err, "inputs are decoded strictly")
	c := goldenCase{set: policies.NewSet(rs...)}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "#") {
			break
		}
		key, val, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "#")), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "source":
			c.source = val
		case "register":
			f := strings.Fields(val)
			require.GreaterOrEqual(t, len(f), 3, "register: service instance address:port [zone]")
			host, port, err := net.SplitHostPort(f[2])
			require.NoError(t, err)
			p, err := strconv.Atoi(port)
			require.NoError(t, err)
			ep := policies.Endpoint{Address: host, Port: p}
			if len(f) > 3 {
				ep.Zone = f[3]
			}
			c.set.Register(f[0], f[1], ep)
		}
	}
	return c
}

func TestGolden(t *testing.T) {
	dir := golden.Open("testdata")
	for _, name := range dir.Cases(t) {
		t.Run(name, func(t *testing.T) {
			c := loadCase(t, dir.Input(t, name))
			for _, flavor := range []ir.Flavor{ir.FlavorEnvoy, ir.FlavorGRPC} {
				prefix := name + "." + string(flavor) + "."
				x, errs := resolve.Resolve(c.set, flavor, c.source, resolve.Options{})
				require.NotNil(t, x, "resolve: %v", errs)
				require.NoError(t, x.Validate(), "resolve produces valid IR")
				dir.Check(t, prefix+"ir.yaml", encodeYAML(t, x))

				r, err := translate.Translate(x)
				require.NoError(t, err, "valid IR translates whole")
				require.NoError(t, translate.Check(r), "every golden output passes Check")
				checkList(t, dir, prefix+"listeners.yaml", r.Listeners)
				checkList(t, dir, prefix+"routes.yaml", r.Routes)
				checkList(t, dir, prefix+"clusters.yaml", r.Clusters)
				checkList(t, dir, prefix+"endpoints.yaml", r.Endpoints)
				if len(errs) > 0 {
					msgs := make([]string, len(errs))
					for i, e := range errs {
						msgs[i] = e.Error()
					}
					dir.Check(t, prefix+"errors.yaml", encodeYAML(t, msgs))
				}

				// Render is resolve + translate + Check: the same resources.
				rendered, rerrs := Render(c.set, flavor, c.source)
				require.Len(t, rerrs, len(errs))
				a, err := MarshalYAML(rendered)
				require.NoError(t, err)
				b, err := MarshalYAML(r)
				require.NoError(t, err)
				require.Equal(t, string(b), string(a))
			}
			dir.Done(name)
		})
	}
	dir.Stale(t)
}

func checkList[T proto.Message](t *testing.T, dir *golden.Dir, name string, ms []T) {
	t.Helper()
	out, err := protoyaml.List(ms)
	require.NoError(t, err)
	dir.Check(t, name, out)
}

func encodeYAML(t *testing.T, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	require.NoError(t, enc.Encode(v), fmt.Sprintf("encode %T", v))
	require.NoError(t, enc.Close())
	return buf.Bytes()
}
