package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// complete runs the bash completion script for the words typed so far (the
// last one is being completed) and returns what it offers.
func complete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	var quoted []string
	for _, w := range append([]string{"bulwarkctl"}, words...) {
		quoted = append(quoted, "'"+w+"'")
	}
	prog := "source " + script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
		strconv.Itoa(len(words)) + "\n_bulwarkctl\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
	out, err := exec.Command("bash", "-c", prog).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.Fields(string(out))
}

// The completion scripts are valid shell and offer the real commands and
// each command's real flags.
func TestCompletion(t *testing.T) {
	dir := t.TempDir()
	bash := filepath.Join(dir, "bulwarkctl.bash")
	r := bulwarkctl(t, "", "completion", "bash")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.NoError(t, os.WriteFile(bash, []byte(r.stdout), 0o644))
	out, err := exec.Command("bash", "-n", bash).CombinedOutput()
	require.NoError(t, err, "bash -n: %s", out)

	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	got := complete(t, bash, "")
	require.Subset(t, got, names)
	require.Subset(t, got, []string{"--server", "--token", "--ca-file"})
	require.Equal(t, []string{"status"}, complete(t, bash, "sta"))
	require.Equal(t, []string{"history"}, complete(t, bash, "--server", "http://x:1", "hist"))
	require.Subset(t, complete(t, bash, "lint", "-"), []string{"-f", "-o", "--min-severity", "--max-fault-percent", "--server"})
	require.Subset(t, complete(t, bash, "get", ""), []string{"services", "policies", "experiments"})
	require.Subset(t, complete(t, bash, "apply", "--"), []string{"--prune", "--yes", "--dry-run", "--source"})
	require.Empty(t, complete(t, bash, "validate", "-f", "")) // files: bash's default

	r = bulwarkctl(t, "", "completion", "zsh")
	require.Equal(t, exitOK, r.code, r.stderr)
	for _, n := range names {
		require.Contains(t, r.stdout, "'"+n+":", "zsh lists %s", n)
	}
	require.Contains(t, r.stdout, "'--min-severity'")
	if zsh, err := exec.LookPath("zsh"); err == nil {
		zf := filepath.Join(dir, "_bulwarkctl")
		require.NoError(t, os.WriteFile(zf, []byte(r.stdout), 0o644))
		out, err := exec.Command(zsh, "-n", zf).CombinedOutput()
		require.NoError(t, err, "zsh -n: %s", out)
	}

	require.Equal(t, exitUsage, bulwarkctl(t, "", "completion", "fish").code)
}

func TestConfirm(t *testing.T) {
	for in, want := range map[string]bool{"y\n": true, "YES\n": true, " yes \n": true, "n\n": false, "\n": false, "": false, "sure\n": false} {
		var out strings.Builder
		require.Equal(t, want, confirm(strings.NewReader(in), &out, "Delete them?"), "%q", in)
		require.Equal(t, "Delete them? [y/N] ", out.String())
	}
}
