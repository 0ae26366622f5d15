package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// yamlBlocks returns the ```yaml blocks of a Markdown file that hold whole
// resources (they start with apiVersion and elide nothing).
func yamlBlocks(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []string
	rest := string(data)
	for {
		i := strings.Index(rest, "```yaml\n")
		if i < 0 {
			return out
		}
		rest = rest[i+len("```yaml\n"):]
		j := strings.Index(rest, "```")
		require.GreaterOrEqual(t, j, 0, "unterminated block in %s", path)
		block := rest[:j]
		rest = rest[j+3:]
		body := strings.TrimSpace(stripComments(block))
		if strings.HasPrefix(body, "apiVersion:") && !strings.Contains(block, "…") {
			out = append(out, block)
		}
	}
}

func stripComments(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// TestDocumentedResourcesValidate keeps the examples in the docs honest:
// every complete resource shown validates.
func TestDocumentedResourcesValidate(t *testing.T) {
	for _, doc := range []string{"../../README.md", "../../docs/policies.md"} {
		blocks := yamlBlocks(t, doc)
		require.NotEmpty(t, blocks, doc)
		for _, b := range blocks {
			r := inProcess(b, "validate", "-f", "-")
			require.Equal(t, exitOK, r.code, "%s:\n%s\n%s", doc, b, r.stderr)
		}
	}
}

// TestReadmeFirstPolicy follows the README: the first policy next to the
// example services validates, lints as the README says and renders.
func TestReadmeFirstPolicy(t *testing.T) {
	blocks := yamlBlocks(t, "../../README.md")
	require.Len(t, blocks, 1)
	dir := t.TempDir()
	services, err := os.ReadFile(examplesDir + "/services.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(dir+"/services.yaml", services, 0o644))
	require.NoError(t, os.WriteFile(dir+"/payments.yaml", []byte(blocks[0]), 0o644))

	r := bulwarkctl(t, "", "validate", "-f", dir)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, "valid: 5 services, 1 policy, 0 experiments in 2 files\n", r.stdout)

	fs := lintJSON(t, exitOK, "-f", dir, "--min-severity", "warning")
	var noTimeout []string
	for _, f := range fs {
		require.Contains(t, f.Message, "have no request timeout", f.String())
		noTimeout = append(noTimeout, f.Name)
	}
	require.Equal(t, []string{"checkout", "frontend", "inventory", "payments-static"}, noTimeout)

	out := renderJSON(t, dir, "checkout", "envoy")
	agg := named(t, out.Clusters, "name", "payments~fallback")
	require.Equal(t, []any{"payments", "payments-static"}, at(t, agg, "cluster_type", "typed_config", "clusters"))
	def := routeWithPrefix(t, routesOf(t, named(t, out.Routes, "name", "outbound"), "payments"), "/", false)
	require.Equal(t, "2s", at(t, def, "route", "timeout"))
	require.Contains(t, at(t, def, "route").(obj), "retry_policy")
	require.Contains(t, named(t, out.Clusters, "name", "payments"), "outlier_detection")
}
