package policies

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// steadyLeaves lists the fields of spec.steadyState as docs/policies.md
// names them ("checks[].query").
func steadyLeaves(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		path := prefix + name
		out = append(out, path)
		ft := f.Type
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			out = append(out, steadyLeaves(ft.Elem(), path+"[].")...)
		}
	}
	return out
}

// Every field of spec.steadyState has a row in docs/policies.md and a
// property in the OpenAPI schema; adding a field fails this test until both
// are written.
func TestEverySteadyStateFieldIsDocumentedAndInTheSchema(t *testing.T) {
	leaves := steadyLeaves(reflect.TypeFor[SteadyState](), "")
	require.Contains(t, leaves, "checks[].above")
	data, err := os.ReadFile("../docs/policies.md")
	require.NoError(t, err)
	raw, err := os.ReadFile("../docs/openapi.json")
	require.NoError(t, err)
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				AllOf []struct {
					Properties map[string]*schemaNode `json:"properties"`
				} `json:"allOf"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	var steady *schemaNode
	for _, part := range doc.Components.Schemas["ChaosExperiment"].AllOf {
		if s := part.Properties["spec"]; s != nil {
			steady = s.Properties["steadyState"]
		}
	}
	require.NotNil(t, steady, "docs/openapi.json: ChaosExperiment.spec has no steadyState")
	for _, l := range leaves {
		require.Contains(t, string(data), "| `spec.steadyState."+l+"`", "docs/policies.md has no row for spec.steadyState.%s", l)
		s := steady
		for _, part := range strings.Split(l, ".") {
			name, list := strings.CutSuffix(part, "[]")
			require.NotNil(t, s.Properties[name], "docs/openapi.json: steadyState has no property %s", l)
			s = s.Properties[name]
			if list {
				require.NotNil(t, s.Items, "docs/openapi.json: steadyState.%s is not a list", name)
				s = s.Items
			}
		}
	}
}

type schemaNode struct {
	Properties map[string]*schemaNode `json:"properties"`
	Items      *schemaNode            `json:"items"`
}
