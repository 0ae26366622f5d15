package main

import (
	"os"
	"os/exec"
	"path/filepath"
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

// TestLintRecipeFails runs docs/cli.md's "fail on warnings" recipe: it must
// fail on files that do not validate, on warnings and on empty input, and
// pass on clean files.
func TestLintRecipeFails(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		t.Fatalf("jq is needed by the documented recipe (make deps installs it): %v", err)
	}
	data, err := os.ReadFile("../../docs/cli.md")
	require.NoError(t, err)
	var recipe string
	for _, block := range strings.Split(string(data), "```sh\n")[1:] {
		block = block[:strings.Index(block, "```")]
		if strings.Contains(block, "jq -e 'length == 0'") {
			recipe = block
		}
	}
	require.NotEmpty(t, recipe, "docs/cli.md has no lint recipe with jq -e")
	recipe = strings.ReplaceAll(recipe, "bulwarkctl ", binary+" ")
	services, err := os.ReadFile(examplesDir + "/services.yaml")
	require.NoError(t, err)
	clean := string(services) + "---\n" + `apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: mesh}
spec: {target: {service: "*"}, timeouts: {request: 5s}}
`
	for _, tc := range []struct {
		name, files string
		pass        bool
	}{
		{"clean", clean, true},
		{"a warning", string(services), false}, // no request timeouts
		{"does not validate", clean + "---\nkind: Nope\n", false},
		{"empty", "# nothing here\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.MkdirAll(filepath.Join(dir, "my-mesh"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "my-mesh", "mesh.yaml"), []byte(tc.files), 0o644))
			cmd := exec.Command("bash", "-c", recipe)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if tc.pass {
				require.NoError(t, err, "%s", out)
			} else {
				require.Error(t, err, "the recipe passed:\n%s", out)
			}
		})
	}
}
