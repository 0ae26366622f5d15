package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// binary is bulwarkctl built once for the whole test run.
var binary string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bulwarkctl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "bulwarkctl")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building bulwarkctl: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// result is what one bulwarkctl run produced.
type result struct {
	code           int
	stdout, stderr string
}

// bulwarkctl runs the built binary with args and stdin, without the
// BULWARK_* variables of the environment.
func bulwarkctl(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BULWARK_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		exitErr, ok := err.(*exec.ExitError)
		require.True(t, ok, "running bulwarkctl: %v", err)
		code = exitErr.ExitCode()
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// inProcess calls run directly, as main does.
func inProcess(stdin string, args ...string) result {
	var stdout, stderr bytes.Buffer
	code := run(args, strings.NewReader(stdin), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func TestHelpListsEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		r := bulwarkctl(t, "", args...)
		require.Equal(t, exitOK, r.code, "%v: %s", args, r.stderr)
		for _, c := range commands() {
			require.Contains(t, r.stdout, "\n  "+c.name+" ", "%v lists %s", args, c.name)
			require.Contains(t, r.stdout, "\n"+c.group+":\n", "%v shows group %q", args, c.group)
		}
		require.Contains(t, r.stdout, "--server")
		require.Contains(t, r.stdout, "BULWARK_TOKEN")
	}
}

func TestHelpForOneCommandShowsItsFlags(t *testing.T) {
	r := bulwarkctl(t, "", "help", "validate")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "Usage: bulwarkctl validate -f PATH")
	require.Contains(t, r.stdout, "-server")

	r = bulwarkctl(t, "", "validate", "-h")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "Usage: bulwarkctl validate -f PATH")

	r = bulwarkctl(t, "", "help", "help")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Contains(t, r.stdout, "Usage: bulwarkctl help [COMMAND]")
}

func TestUsageErrorsExit2(t *testing.T) {
	cases := map[string]struct {
		args []string
		want string
	}{
		"no command":       {nil, "Offline commands"},
		"unknown command":  {[]string{"deploy"}, `unknown command "deploy"`},
		"unknown flag":     {[]string{"validate", "--nope"}, "flag provided but not defined: -nope"},
		"missing -f":       {[]string{"validate"}, "-f is required"},
		"stray argument":   {[]string{"validate", "-f", "x.yaml", "extra"}, `unexpected argument "extra"`},
		"unknown help for": {[]string{"help", "deploy"}, `unknown command "deploy"`},
		"mistyped command": {[]string{"stauts"}, `unknown command "stauts" (did you mean "status"?)`},
		"mistyped help":    {[]string{"help", "vaildate"}, `unknown command "vaildate" (did you mean "validate"?)`},
		"mistyped apply":   {[]string{"aply", "-f", "x"}, `unknown command "aply" (did you mean "apply"?)`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := inProcess("", tc.args...)
			require.Equal(t, exitUsage, r.code, r.stderr)
			require.Contains(t, r.stderr, tc.want)
		})
	}
}

func TestGlobalFlagsBeforeOrAfterTheCommand(t *testing.T) {
	r := bulwarkctl(t, "", "--server", "http://10.0.0.1:18080", "--token", "s3cret", "validate", "-f", "testdata/valid")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = bulwarkctl(t, "", "validate", "--server=http://10.0.0.1:18080", "-f", "testdata/valid", "--token", "s3cret")
	require.Equal(t, exitOK, r.code, r.stderr)
}

func TestGlobalFlagDefaults(t *testing.T) {
	t.Setenv("BULWARK_SERVER", "")
	t.Setenv("BULWARK_TOKEN", "")
	e := &env{}
	fs := e.newFlagSet("validate")
	require.NoError(t, fs.Parse(nil))
	require.Equal(t, defaultServer, e.server)
	require.Empty(t, e.token)

	t.Setenv("BULWARK_SERVER", "https://bulwark.example:18080")
	t.Setenv("BULWARK_TOKEN", "from-env")
	e = &env{}
	fs = e.newFlagSet("validate")
	require.NoError(t, fs.Parse(nil))
	require.Equal(t, "https://bulwark.example:18080", e.server)
	require.Equal(t, "from-env", e.token)

	e = &env{}
	fs = e.newFlagSet("validate")
	require.NoError(t, fs.Parse([]string{"--server", "http://flag:1", "--token", "from-flag"}))
	require.Equal(t, "http://flag:1", e.server, "the flag beats the environment")
	require.Equal(t, "from-flag", e.token)
}
