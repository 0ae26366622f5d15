package policies

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// decodeOne decodes one resource strictly, failing the test on any error.
func decodeOne(t *testing.T, doc string) Resource {
	t.Helper()
	r, err := DecodeOne([]byte(doc))
	require.NoError(t, err)
	return r
}

// decodeSet decodes a bundle strictly into a Set, applying service defaults.
func decodeSet(t *testing.T, bundle string) *Set {
	t.Helper()
	rs, err := DecodeAll([]byte(bundle))
	require.NoError(t, err)
	for _, r := range rs {
		require.Empty(t, Validate(r, ValidateOptions{}), "test input must be valid: %s %s", r.GetKind(), r.GetMeta().Name)
		if s, ok := r.(*Service); ok {
			DefaultService(s)
		}
	}
	return NewSet(rs...)
}

// doc wraps a spec (YAML flow or block) into a resource of kind named name.
func doc(kind, name, spec string) string {
	return "apiVersion: bulwark/v1\nkind: " + kind + "\nmetadata: {name: " + name + "}\nspec: " + spec + "\n"
}
