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
