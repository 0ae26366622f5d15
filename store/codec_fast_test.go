package store

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
)

// TestCanonicalValuesDecodeLikeStrictOnes: the fast path for values the
// store wrote gives the strict decoder's result, and refuses everything the
// store would not have written (a call to nothing stays distinct from a
// call to everything).
func TestCanonicalValuesDecodeLikeStrictOnes(t *testing.T) {
	for _, r := range []policies.Resource{
		decode(t, `{"apiVersion":"bulwark/v1","kind":"Service","metadata":{"name":"a","labels":{"t":"x"}},"spec":{"port":80,"endpoints":[{"address":"10.0.0.1","port":80}],"dependencies":["b"]}}`),
		decode(t, `{"apiVersion":"bulwark/v1","kind":"Service","metadata":{"name":"leaf"},"spec":{"port":80,"dependencies":[]}}`),
		policy(t, "p", "a"),
		experiment(t, "e", "5m"),
	} {
		b, err := encodeResource(r)
		require.NoError(t, err)
		fast := decodeCanonical(r.GetKind(), b)
		require.NotNil(t, fast, string(b))
		strict, err := policies.DecodeStored(b)
		require.NoError(t, err)
		require.Equal(t, strict, fast)
		if s, ok := fast.(*policies.Service); ok && s.Metadata.Name == "leaf" {
			require.NotNil(t, s.Spec.Dependencies)
			require.Empty(t, s.Spec.Dependencies)
		}
	}
	for _, v := range []string{
		`{"apiVersion":"bulwark/v1","kind":"Service","metadata":{"name":"a"},"spec":{"port":80,"extra":1}}`,
		`{"apiVersion":"bulwark/v1","kind":"Service","metadata":{"name":"a"},"SPEC":{"port":80}}`,
		`{"kind":"Service","apiVersion":"bulwark/v1","metadata":{"name":"a"},"spec":{"port":80}}`,
		`{"apiVersion":"bulwark/v1","kind":"Service","metadata":{"name":"a","revision":3},"spec":{"port":80}}`,
		`not json`,
	} {
		require.Nil(t, decodeCanonical(policies.KindService, []byte(v)), v)
	}
}
