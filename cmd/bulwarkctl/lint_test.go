package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
)

// lintJSON runs lint -o json and decodes its findings.
func lintJSON(t *testing.T, wantCode int, args ...string) []policies.Finding {
	t.Helper()
	r := bulwarkctl(t, "", append([]string{"lint", "-o", "json"}, args...)...)
	require.Equal(t, wantCode, r.code, r.stderr)
	var fs []policies.Finding
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &fs), r.stdout)
	return fs
}

// findingAt returns the findings of one resource and field.
func findingsAt(fs []policies.Finding, name, field string) []policies.Finding {
	var out []policies.Finding
	for _, f := range fs {
		if f.Name == name && f.Field == field {
			out = append(out, f)
		}
	}
	return out
}

func requireFinding(t *testing.T, fs []policies.Finding, sev policies.Severity, name, field, fragment string) {
	t.Helper()
	for _, f := range findingsAt(fs, name, field) {
		if f.Severity == sev && strings.Contains(f.Message, fragment) {
			return
		}
	}
	require.Failf(t, "finding not reported", "want %s on %s %s containing %q; got %v", sev, name, field, fragment, fs)
}

func TestLintWarnings(t *testing.T) {
	fs := lintJSON(t, exitOK, "-f", "testdata/lint/warnings.yaml")
	// attempts × perTryTimeout (+ backoff) past timeouts.request.
	requireFinding(t, fs, policies.SeverityWarning, "orders", "spec.retries.attempts", "at or past timeouts.request 3s: the later tries can never run")
	// Retries without a budget.
	requireFinding(t, fs, policies.SeverityWarning, "orders", "spec.retries.attempts", "no retries.budget")
	// 5xx retried without methods.
	requireFinding(t, fs, policies.SeverityWarning, "orders", "spec.retries.on", "retries on 5xx for every method")
	// Fields the gRPC flavor ignores, on a policy for a gRPC service.
	requireFinding(t, fs, policies.SeverityWarning, "search", "spec.circuitBreaker.consecutive5xx", "ignored by proxyless gRPC clients")
	requireFinding(t, fs, policies.SeverityWarning, "search", "spec.timeouts.connect", "ignored by proxyless gRPC clients")
	for _, f := range fs {
		require.NotEqual(t, policies.SeverityError, f.Severity, f.String())
	}
}

func TestLintMissingFallbackIsAnError(t *testing.T) {
	r := bulwarkctl(t, "", "lint", "-f", "testdata/lint/missing-fallback.yaml")
	require.Equal(t, exitFailed, r.code, r.stderr)
	require.Empty(t, r.stderr)
	lines := strings.Split(r.stdout, "\n")
	require.Regexp(t, `^SEVERITY +KIND +NAME +FIELD +MESSAGE$`, lines[0])
	require.Regexp(t, `^error +ResiliencePolicy +cart +spec\.fallback\.service +fallback service "cart-static" does not exist`, lines[1])
	require.Equal(t, "1 error", lines[3])
}

func TestLintTableIsAligned(t *testing.T) {
	r := bulwarkctl(t, "", "lint", "-f", "testdata/lint/warnings.yaml")
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	header := lines[0]
	cols := []int{0, strings.Index(header, "KIND"), strings.Index(header, "NAME"), strings.Index(header, "FIELD"), strings.Index(header, "MESSAGE")}
	rows := 0
	for _, line := range lines[1:] {
		if line == "" {
			break // the summary follows a blank line
		}
		rows++
		for _, c := range cols[1:] {
			require.Equal(t, byte(' '), line[c-1], "column boundary in %q", line)
			require.NotEqual(t, byte(' '), line[c], "column start in %q", line)
		}
	}
	require.Equal(t, 7, rows)
	require.Equal(t, "5 warnings, 2 infos", lines[len(lines)-1])
}

func TestLintMinSeverity(t *testing.T) {
	fs := lintJSON(t, exitOK, "-f", "testdata/lint/warnings.yaml", "--min-severity", "warning")
	require.Len(t, fs, 5)
	for _, f := range fs {
		require.Equal(t, policies.SeverityWarning, f.Severity)
	}
	require.Empty(t, lintJSON(t, exitOK, "-f", "testdata/lint/warnings.yaml", "--min-severity", "error"))
	// Errors fail the run whatever is shown.
	require.Len(t, lintJSON(t, exitFailed, "-f", "testdata/lint/missing-fallback.yaml", "--min-severity", "error"), 1)
}

func TestLintNoFindings(t *testing.T) {
	r := bulwarkctl(t, "", "lint", "-f", "testdata/valid", "--min-severity", "warning")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, "no findings\n", r.stdout)
	require.Empty(t, lintJSON(t, exitOK, "-f", "testdata/valid", "--min-severity", "warning"))
}

func TestLintRefusesInvalidInput(t *testing.T) {
	r := bulwarkctl(t, "", "lint", "-f", "testdata/invalid/unknown-and-range.yaml")
	require.Equal(t, exitFailed, r.code)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "testdata/invalid/unknown-and-range.yaml: document 0 (ResiliencePolicy payments): spec.timeouts.conect: unknown field")
	require.Contains(t, r.stderr, "spec.retries.attempts: must be between 0 and 10")
}

func TestLintUsage(t *testing.T) {
	cases := map[string]struct {
		args []string
		want string
	}{
		"missing -f":       {[]string{"lint"}, "-f is required"},
		"bad output":       {[]string{"lint", "-f", "testdata/valid", "-o", "xml"}, "-o must be table or json"},
		"bad min severity": {[]string{"lint", "-f", "testdata/valid", "--min-severity", "fatal"}, `--min-severity must be info, warning or error (got "fatal")`},
		"stray argument":   {[]string{"lint", "-f", "testdata/valid", "extra"}, `unexpected argument "extra"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := inProcess("", tc.args...)
			require.Equal(t, exitUsage, r.code, r.stderr)
			require.Contains(t, r.stderr, tc.want)
			require.Contains(t, r.stderr, "Usage: bulwarkctl lint")
		})
	}
}
