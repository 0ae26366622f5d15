package main

import "fmt"

// runValidate checks policy files offline and exits 1 on any problem.
func runValidate(e *env, args []string) int {
	fs := e.newFlagSet("validate")
	path := fs.String("f", "", "a file, a directory (recursive: *.yaml, *.yml, *.json) or - for stdin")
	guardrails := guardrailFlags(fs)
	if code, ok := e.parse(fs, "validate", args); !ok {
		return code
	}
	if *path == "" {
		return e.usageError(fs, "validate", "-f is required")
	}
	b, probs, err := check(*path, e.stdin, *guardrails)
	if err != nil {
		fmt.Fprintf(e.stderr, "bulwarkctl validate: %v\n", err)
		return exitFailed
	}
	if len(probs) > 0 {
		reportProblems(e.stderr, probs)
		return exitFailed
	}
	fmt.Fprintf(e.stdout, "valid: %s\n", b.summary())
	return exitOK
}
