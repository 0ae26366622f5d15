package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func numbered(n int, replace map[int]string) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if r, ok := replace[i]; ok {
			b.WriteString(r + "\n")
			continue
		}
		fmt.Fprintf(&b, "%d\n", i)
	}
	return b.String()
}

// The hunks are those of diff -u: three lines of context, nearby changes
// merged, new and deleted files against /dev/null.
func TestUnifiedDiffMatchesDiffU(t *testing.T) {
	require.Empty(t, unifiedDiff("a", "b", "x\ny\n", "x\ny\n"))

	got := unifiedDiff("a", "b", numbered(20, nil), numbered(20, map[int]string{5: "five", 16: "sixteen"}))
	require.Equal(t, "--- a\n+++ b\n"+
		"@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"+
		"@@ -13,7 +13,7 @@\n 13\n 14\n 15\n-16\n+sixteen\n 17\n 18\n 19\n", got)

	got = unifiedDiff("a", "b", numbered(10, nil), numbered(10, map[int]string{5: "five", 9: "nine"}))
	require.Equal(t, "--- a\n+++ b\n@@ -2,9 +2,9 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n-9\n+nine\n 10\n", got)

	require.Equal(t, "--- /dev/null\n+++ b\n@@ -0,0 +1,2 @@\n+x\n+y\n", unifiedDiff("/dev/null", "b", "", "x\ny\n"))
	require.Equal(t, "--- a\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-x\n-y\n", unifiedDiff("a", "/dev/null", "x\ny\n", ""))
	require.Equal(t, "--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n", unifiedDiff("a", "b", "x\n", "y\n"))
}
