package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidateValidBundle(t *testing.T) {
	r := bulwarkctl(t, "", "validate", "-f", "testdata/valid/bundle.yaml")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, "valid: 2 services, 2 policies, 0 experiments in 1 file\n", r.stdout)
	require.Empty(t, r.stderr)
}

func TestValidateReportsUnknownFieldAndOutOfRangeTogether(t *testing.T) {
	r := bulwarkctl(t, "", "validate", "-f", "testdata/invalid/unknown-and-range.yaml")
	require.Equal(t, exitFailed, r.code)
	require.Empty(t, r.stdout)
	const where = "testdata/invalid/unknown-and-range.yaml: document 0 (ResiliencePolicy payments): "
	require.Contains(t, r.stderr, where+"spec.timeouts.conect: unknown field (did you mean \"connect\"?) (line 9)\n")
	require.Contains(t, r.stderr, where+"spec.retries.attempts: ")
	require.Contains(t, r.stderr, "2 problems found\n")
}

func TestValidateReportsEveryBadDocument(t *testing.T) {
	r := bulwarkctl(t, "", "validate", "-f", "testdata/invalid/types.yaml")
	require.Equal(t, exitFailed, r.code)
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	require.Equal(t, []string{
		`testdata/invalid/types.yaml: document 0 (ResiliencePolicy wrong-types): spec.timeouts.request: must be a duration string such as "250ms" or "3s" (line 7)`,
		`testdata/invalid/types.yaml: document 0 (ResiliencePolicy wrong-types): spec.retries.attempts: must be an integer (line 9)`,
		`testdata/invalid/types.yaml: document 2 (Gadget what): kind: unknown kind "Gadget": use Service, ResiliencePolicy or ChaosExperiment (line 20)`,
		`3 problems found`,
	}, lines)
}

func TestValidateMalformedYAML(t *testing.T) {
	r := bulwarkctl(t, "", "validate", "-f", "testdata/invalid/malformed.yaml")
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "testdata/invalid/malformed.yaml: document 1: malformed YAML: line ")
	require.Contains(t, r.stderr, "1 problem found\n")
}

func TestValidateDirectoryIsRecursiveAndSorted(t *testing.T) {
	r := bulwarkctl(t, "", "validate", "-f", "testdata/tree")
	require.Equal(t, exitOK, r.code, r.stderr)
	// services.yaml, nested/beta.yml and nested/policies.json; README.txt and
	// .hidden/ are not read.
	require.Equal(t, "valid: 2 services, 1 policy, 0 experiments in 3 files\n", r.stdout)

	ins, err := readInputs("testdata/tree", nil)
	require.NoError(t, err)
	var names []string
	for _, in := range ins {
		names = append(names, in.name)
	}
	require.Equal(t, []string{"testdata/tree/nested/beta.yml", "testdata/tree/nested/policies.json", "testdata/tree/services.yaml"}, names)
}

func TestValidateEveryFileOfADirectoryAtOnce(t *testing.T) {
	r := bulwarkctl(t, "", "validate", "-f", "testdata/invalid")
	require.Equal(t, exitFailed, r.code)
	for _, f := range []string{"malformed.yaml", "types.yaml", "unknown-and-range.yaml"} {
		require.Contains(t, r.stderr, "testdata/invalid/"+f+": document ")
	}
	// A bundle with bad documents is not checked for conflicts: its set is incomplete.
	require.NotContains(t, r.stderr, "conflicts with")
}

func TestValidateStdin(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/bundle.yaml")
	require.NoError(t, err)
	r := bulwarkctl(t, string(data), "validate", "-f", "-")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, "valid: 2 services, 2 policies, 0 experiments in 1 file\n", r.stdout)

	r = bulwarkctl(t, "apiVersion: bulwark/v1\nkind: Service\nmetadata: {name: x}\nspec: {port: 8080, bogus: 1}\n", "validate", "-f", "-")
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "<stdin>: document 0 (Service x): spec.bogus: unknown field (line 4)\n")
}

func TestValidateDuplicateNamesAcrossFiles(t *testing.T) {
	r := bulwarkctl(t, "", "validate", "-f", "testdata/dup")
	require.Equal(t, exitFailed, r.code)
	require.Equal(t, "testdata/dup/b.yaml: document 1 (Service gamma): metadata.name: Service \"gamma\" is already defined in testdata/dup/a.yaml document 0\n1 problem found\n", r.stderr)
}

func TestValidateConflictingPolicies(t *testing.T) {
	r := bulwarkctl(t, "", "validate", "-f", "testdata/invalid/conflict.yaml")
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, `testdata/invalid/conflict.yaml: document 2 (ResiliencePolicy by-tier): spec.timeouts.request: conflicts with policy "by-team"`)
	require.Contains(t, r.stderr, "1 problem found\n")
}

func TestValidateIndexesDocumentsLikeTheDecoder(t *testing.T) {
	// Empty and comment-only documents are skipped; list items count one each.
	r := bulwarkctl(t, "", "validate", "-f", "testdata/invalid/shapes.yaml")
	require.Equal(t, exitFailed, r.code)
	const f = "testdata/invalid/shapes.yaml: "
	require.Equal(t, f+"document 1 (ResiliencePolicy listed): spec.timeouts.bogus: unknown field (line 19)\n"+
		f+"document 1 (ResiliencePolicy listed): spec.retries.attempts: must be between 0 and 10 (got -1)\n"+
		f+"document 2 (ChaosExperiment too-long): spec.abort.percent: must be at most 50, the blast-radius cap (the server flag --max-fault-percent raises it); got 80\n"+
		f+"document 2 (ChaosExperiment too-long): spec.duration: must be at most 1h, the server's cap (its flag --max-experiment-duration raises it); got 2h\n"+
		"4 problems found\n", r.stderr)
}

func TestValidateGuardrailFlags(t *testing.T) {
	// The server's caps can be raised; validation follows.
	r := bulwarkctl(t, "", "validate", "-f", "testdata/invalid/shapes.yaml", "--max-fault-percent", "100", "--max-experiment-duration", "3h")
	require.Equal(t, exitFailed, r.code)
	require.NotContains(t, r.stderr, "too-long")
	require.Contains(t, r.stderr, "2 problems found\n")
}

func TestValidateMissingPath(t *testing.T) {
	r := bulwarkctl(t, "", "validate", "-f", "testdata/does-not-exist")
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "no such file or directory")
}

// Empty input is not a valid bundle: a CI step fed by a pipe that produced
// nothing must fail.
func TestValidateEmptyInputFails(t *testing.T) {
	for _, in := range []string{"", "\n", "# only a comment\n---\n"} {
		for _, cmd := range []string{"validate", "lint"} {
			r := bulwarkctl(t, in, cmd, "-f", "-")
			require.Equal(t, exitFailed, r.code, "%s %q: %s", cmd, in, r.stdout)
			require.Contains(t, r.stderr, "<stdin>: no resources: the input is empty")
			require.NotContains(t, r.stdout, "valid")
		}
	}
}
