package policies

import (
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPolicyLeavesIndexAndType(t *testing.T) {
	spec := reflect.TypeOf(PolicySpec{})
	seen := map[string]bool{}
	for _, l := range PolicyLeaves() {
		require.False(t, seen[l.Path], "duplicate leaf %s", l.Path)
		seen[l.Path] = true
		// Follow the index through the pointers: it must land on a field
		// of the leaf's type whose JSON name ends the path.
		typ := spec
		var f reflect.StructField
		for i, x := range l.Index {
			if typ.Kind() == reflect.Pointer {
				typ = typ.Elem()
			}
			f = typ.Field(x)
			typ = f.Type
			if i < len(l.Index)-1 {
				require.Equal(t, reflect.Pointer, typ.Kind(), "%s: step %d is not a section", l.Path, i)
			}
		}
		require.Equal(t, l.Type, f.Type, l.Path)
		require.Equal(t, l.Path[len(l.Path)-len(jsonName(f)):], jsonName(f), l.Path)
	}
	require.False(t, seen["target.service"], "target selects calls; it is not a setting")
	require.False(t, seen["sources"], "sources select calls; they are not a setting")
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

func TestLeafMergeKey(t *testing.T) {
	keys := map[string]string{}
	for _, l := range PolicyLeaves() {
		keys[l.Path] = l.MergeKey()
	}
	require.Equal(t, "retries.backoff.base", keys["retries.backoff.base"])
	require.Equal(t, ProbeLeaf, keys["healthCheck.http.path"])
	require.Equal(t, ProbeLeaf, keys["healthCheck.grpc.serviceName"])
	require.Equal(t, ProbeLeaf, keys["healthCheck.tcp"])
	require.Equal(t, "healthCheck.interval", keys["healthCheck.interval"])
}

func TestSetLeavesAndSetFields(t *testing.T) {
	p := decodeOne(t, doc("ResiliencePolicy", "p", `{target: {service: payments},
  timeouts: {request: 3s},
  retries: {backoff: {max: 1s}, on: []},
  circuitBreaker: {failurePercentage: {}},
  bulkhead: {},
  healthCheck: {http: {path: /hc}, interval: 2s}}`)).(*ResiliencePolicy)
	require.Equal(t, []string{"timeouts.request", "retries.on", "retries.backoff.max", "healthCheck.http.path", "healthCheck.interval"},
		SetLeaves(&p.Spec))
	require.Equal(t, []string{"timeouts.request", "retries.on", "retries.backoff.max", "circuitBreaker.failurePercentage",
		"bulkhead", "healthCheck.http", "healthCheck.interval"}, setFields(&p.Spec))
}
