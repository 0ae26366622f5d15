package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// confirmPrune shows what an apply with --prune would delete (a dry run of
// the same request) and asks before going on. Without a terminal on stdin
// there is no one to ask: it refuses, and --yes is the way to prune from a
// script. Nothing to delete needs no confirmation. It returns an exit code
// and false when the apply must not go on.
func (e *env) confirmPrune(c *client, target string, body []byte) (int, bool) {
	sep := "&"
	if !strings.Contains(target, "?") {
		sep = "?"
	}
	var res api.ApplyResult
	if err := c.call("POST", target+sep+"dryRun=true", "application/json", body, &res); err != nil {
		return e.fail("apply", err), false
	}
	var doomed []string
	for _, it := range res.Items {
		if it.Action == api.ActionDeleted {
			doomed = append(doomed, it.Kind+" "+it.Name)
		}
	}
	if len(doomed) == 0 {
		return exitOK, true
	}
	fmt.Fprintf(e.stderr, "--prune will delete %s:\n", plural(len(doomed), "resource", "resources"))
	for _, d := range doomed {
		fmt.Fprintf(e.stderr, "  %s\n", d)
	}
	if !isTerminal(e.stdin) {
		fmt.Fprintln(e.stderr, "bulwarkctl apply: not deleting without confirmation, and stdin is not a terminal: run again with --yes")
		return exitFailed, false
	}
	if !confirm(e.stdin, e.stderr, "Delete them and apply?") {
		fmt.Fprintln(e.stderr, "bulwarkctl apply: nothing written")
		return exitFailed, false
	}
	return exitOK, true
}

// confirm asks a yes/no question on w and reads the answer from r: only
// "y" or "yes" (any case) agrees.
func confirm(r io.Reader, w io.Writer, question string) bool {
	fmt.Fprintf(w, "%s [y/N] ", question)
	line, _ := bufio.NewReader(r).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// isTerminal reports whether r is a terminal (a character device).
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
