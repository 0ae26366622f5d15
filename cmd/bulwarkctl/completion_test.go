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
	quoted := quoteAll(append([]string{"bulwarkctl"}, words...))
	prog := "source " + script + "\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" +
		strconv.Itoa(len(words)) + "\n_bulwarkctl\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
	out, err := exec.Command("bash", "-c", prog).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.Fields(string(out))
}

func quoteAll(words []string) []string {
	out := make([]string, len(words))
	for i, w := range words {
		out[i] = "'" + w + "'"
	}
	return out
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
	require.Subset(t, complete(t, bash, "chaos", ""), []string{"start", "stop", "list", "-f", "--history"})
	require.Subset(t, complete(t, bash, "apply", "--"), []string{"--prune", "--yes", "--dry-run", "--source"})
	require.Empty(t, complete(t, bash, "validate", "-f", "")) // files: bash's default

	r = bulwarkctl(t, "", "completion", "zsh")
	require.Equal(t, exitOK, r.code, r.stderr)
	for _, n := range names {
		require.Contains(t, r.stdout, "'"+n+":", "zsh lists %s", n)
	}
	require.Contains(t, r.stdout, "'--min-severity'")
	zsh, err := exec.LookPath("zsh")
	require.NoError(t, err, "zsh is needed (make deps installs it)")
	zf := filepath.Join(dir, "_bulwarkctl")
	require.NoError(t, os.WriteFile(zf, []byte(r.stdout), 0o644))
	out, err = exec.Command(zsh, "-n", zf).CombinedOutput()
	require.NoError(t, err, "zsh -n: %s", out)
	// Run the completion function with zsh's completion builtins replaced by
	// functions that print what they are given.
	zcomplete := func(words ...string) []string {
		prog := "source " + zf + `
_describe() { print -l -- "${(@P)4}" }
compadd() { shift; print -l -- "$@" }
_files() { print FILES }
words=(bulwarkctl ` + strings.Join(quoteAll(words), " ") + `)
CURRENT=` + strconv.Itoa(len(words)+1) + `
_bulwarkctl
`
		out, err := exec.Command(zsh, "-f", "-c", prog).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	got = zcomplete("")
	for _, c := range commands() {
		require.Contains(t, got, c.name+":"+c.summary)
	}
	require.Subset(t, zcomplete("lint", "-"), []string{"-f", "-o", "--min-severity", "FILES"})
	require.Equal(t, []string{"FILES"}, zcomplete("validate", "-f", ""))

	require.Equal(t, exitUsage, bulwarkctl(t, "", "completion", "fish").code)
}

func TestConfirm(t *testing.T) {
	for in, want := range map[string]bool{"y\n": true, "YES\n": true, " yes \n": true, "n\n": false, "\n": false, "": false, "sure\n": false} {
		var out strings.Builder
		require.Equal(t, want, confirm(strings.NewReader(in), &out, "Delete them?"), "%q", in)
		require.Equal(t, "Delete them? [y/N] ", out.String())
	}
}
