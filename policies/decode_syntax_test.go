package policies

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A syntax error names the line of the file it is on, for parser errors
// (which yaml.v3 reports 0-based) and scanner errors (1-based) alike.
func TestDecodeMalformedYAMLLine(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     string
	}{
		{"unclosed flow mapping (parser)", doc("Service", "a", "{port: 80}") + "---\napiVersion: bulwark/v1\nkind: Service\nmetadata: {name: broken\nspec:\n  port: 8080\n",
			"malformed YAML: line 8: did not find expected ',' or '}'"},
		{"bad indentation (parser)", "apiVersion: bulwark/v1\nkind: Service\nmetadata:\n  name: a\n bad: 1\n",
			"malformed YAML: line 5: did not find expected key"},
		{"tab (scanner)", "apiVersion: bulwark/v1\nkind: Service\nmetadata:\n\tname: a\n",
			"malformed YAML: line 4: found character that cannot start any token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := decodeErrs(t, tc.in)
			require.Len(t, errs, 1)
			require.Equal(t, Violations{{Message: tc.want}}, errs[0].Violations)
		})
	}
}

func TestClosest(t *testing.T) {
	names := []string{"attempts", "perTryTimeout", "retryOn", "frontend", "payments"}
	for in, want := range map[string]string{
		"attemps":       "attempts", // a letter left out
		"Attempts":      "attempts", // case
		"atempts":       "attempts",
		"attmepts":      "attempts", // two letters swapped
		"frontnd":       "frontend",
		"perTryTimeOut": "perTryTimeout",
		"payment":       "payments",
		"checkout":      "", // nothing close
		"ab":            "", // too short to guess
		"attempts":      "", // the name itself is not a suggestion
	} {
		require.Equal(t, want, Closest(in, names), in)
	}
}
