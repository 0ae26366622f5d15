package xds

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds/internal/golden"
	"github.com/bulwarkmesh/bulwark/xds/ir"
)

func meshSet(t *testing.T) *policies.Set {
	t.Helper()
	return loadCase(t, golden.Open("testdata").Input(t, "mesh")).set
}

func TestMarshalDocuments(t *testing.T) {
	r, errs := Render(meshSet(t), ir.FlavorGRPC, "checkout")
	require.Empty(t, errs)
	js, err := MarshalJSON(r)
	require.NoError(t, err)
	var doc map[string][]map[string]any
	require.NoError(t, json.Unmarshal(js, &doc))
	require.Len(t, doc["listeners"], len(r.Listeners))
	require.Len(t, doc["routes"], len(r.Routes))
	require.Len(t, doc["clusters"], len(r.Clusters))
	require.Len(t, doc["endpoints"], len(r.Endpoints))
	require.Equal(t, "inventory", doc["listeners"][0]["name"])
	require.Contains(t, doc["endpoints"][0], "cluster_name", "proto field names")

	again, err := MarshalJSON(r)
	require.NoError(t, err)
	require.Equal(t, string(js), string(again), "stable bytes")

	y, err := MarshalYAML(r)
	require.NoError(t, err)
	var ydoc map[string][]map[string]any
	require.NoError(t, yaml.Unmarshal(y, &ydoc))
	require.Equal(t, len(doc["clusters"]), len(ydoc["clusters"]))
	require.Equal(t, "inventory", ydoc["clusters"][0]["name"])

	_, err = MarshalJSON(nil)
	require.Error(t, err)
}

func TestRenderEmptyListsAreLists(t *testing.T) {
	r, errs := Render(policies.NewSet(), ir.FlavorGRPC, "")
	require.Empty(t, errs)
	js, err := MarshalJSON(r)
	require.NoError(t, err)
	require.JSONEq(t, `{"listeners":[],"routes":[],"clusters":[],"endpoints":[]}`, string(js))
}

func TestRenderRejectsABadGroup(t *testing.T) {
	r, errs := Render(meshSet(t), "mystery", "checkout")
	require.Nil(t, r)
	require.NotEmpty(t, errs)
}
