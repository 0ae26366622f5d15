package main

import "fmt"

// runHelp prints the command list, or one command's usage and flags.
func runHelp(e *env, args []string) int {
	switch len(args) {
	case 0:
		printUsage(e.stdout)
		return exitOK
	case 1:
		c := lookup(args[0])
		if c == nil {
			fmt.Fprintf(e.stderr, "bulwarkctl help: unknown command %q%s\n\n", args[0], suggestCommand(args[0]))
			printUsage(e.stderr)
			return exitUsage
		}
		if c.name == "help" {
			printCommandUsage(e.stdout, "help", nil)
			return exitOK
		}
		// Every command prints its usage and flags on -h.
		return c.run(e, []string{"-h"})
	default:
		fmt.Fprintln(e.stderr, "bulwarkctl help: at most one command")
		return exitUsage
	}
}
