// Command bulwarkctl is Bulwark's command-line client. The offline commands
// (validate, lint, render) check and preview policy files without a server, so
// a GitOps pipeline can run them before a change merges; the online commands
// talk to a control plane's admin API.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/bulwarkmesh/bulwark/policies"
)

// Exit codes, the same for every command.
const (
	exitOK          = 0 // success
	exitFailed      = 1 // a validation error, an error finding, a rendering problem
	exitUsage       = 2 // bad flags or arguments
	exitUnreachable = 3 // the server could not be reached
)

// defaultServer is the admin API a control plane started with defaults serves.
const defaultServer = "http://127.0.0.1:18080"

// Command groups, in the order help lists them.
const (
	groupOffline = "Offline commands (files only, no server)"
	groupServer  = "Server commands (the admin API at --server)"
	groupOther   = "Other commands"
)

// command is one subcommand of bulwarkctl.
type command struct {
	name    string
	group   string // one of the group* constants: where help lists it
	summary string // one line for the command list
	// usage is the synopsis after "bulwarkctl", such as "validate -f PATH".
	usage string
	run   func(e *env, args []string) int
}

// commands returns every subcommand in the order help shows them. Adding a
// command is adding a line here and a file with its run function, which
// builds its flags with e.newFlagSet (the global flags come with it), parses
// them with e.parse and returns one of the exit codes above. A server command
// reads e.server and e.token and returns exitUnreachable when the admin API
// cannot be reached. (A function rather than a variable: help refers back to
// the table.)
func commands() []command {
	return []command{
		{name: "validate", group: groupOffline, usage: "validate -f PATH", summary: "check policy files: strict decoding, field validation, duplicate names, conflicts", run: runValidate},
		{name: "lint", group: groupOffline, usage: "lint -f PATH [-o table|json] [--min-severity info|warning|error] [--prometheus-url URL]", summary: "report settings that are legal but probably wrong", run: runLint},
		{name: "render", group: groupOffline, usage: "render -f PATH --service S [--flavor envoy|grpc] [-o yaml|json]", summary: "print the xDS the proxies of service S would receive", run: runRender},
		{name: "apply", group: groupServer, usage: "apply -f PATH [--dry-run] [--prune --source S] [-o table|json]", summary: "write policy files to the server in one atomic apply", run: runApply},
		{name: "diff", group: groupServer, usage: "diff -f PATH [--prune --source S] [--exit-code]", summary: "show how the server's resources differ from the files, as a unified diff", run: runDiff},
		{name: "get", group: groupServer, usage: "get KIND [NAME] [-o table|yaml|json]", summary: "show services, policies or experiments", run: runGet},
		{name: "delete", group: groupServer, usage: "delete KIND NAME", summary: "delete a resource (an experiment: stop it)", run: runDelete},
		{name: "status", group: groupServer, usage: "status [-o table|json]", summary: "show the revision, readiness, rollout and directory sync", run: runStatus},
		{name: "proxies", group: groupServer, usage: "proxies [-o table|json]", summary: "list connected proxies with their versions and NACKs", run: runProxies},
		{name: "config", group: groupServer, usage: "config NODE | config --service S [--flavor envoy|grpc]", summary: "print the exact xDS a proxy or a group receives", run: runConfig},
		{name: "chaos", group: groupServer, usage: "chaos start -f FILE | chaos run -f FILE [--wait] | chaos stop [NAME] | chaos list [--history]", summary: "start, run to a verdict, stop (kill switch) and list chaos experiments", run: runChaos},
		{name: "recommend", group: groupServer, usage: "recommend [--service S] [--window 1h] [-o table|yaml|json]", summary: "timeouts recommended from the latency Prometheus observed; -o yaml as policies to apply", run: runRecommend},
		{name: "audit", group: groupServer, usage: "audit [--service S] [-o table|json]", summary: "show the resilience checklist of every service", run: runAudit},
		{name: "history", group: groupServer, usage: "history [--limit N] [-o table|json]", summary: "show the write history: who changed which resources, when, revisions before and after", run: runHistory},
		{name: "version", group: groupOther, usage: "version [-o text|json]", summary: "print bulwarkctl's version and the server's", run: runVersion},
		{name: "completion", group: groupOther, usage: "completion bash|zsh", summary: "print a shell completion script", run: runCompletion},
		{name: "help", group: groupOther, usage: "help [COMMAND]", summary: "show help for bulwarkctl or one command", run: runHelp},
	}
}

// env is what a command runs with: its streams and the global flags.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// server is the admin API's base URL (--server, BULWARK_SERVER).
	server string
	// token is the bearer token for the admin API (--token, BULWARK_TOKEN).
	token string
	// caFile is a PEM CA for an HTTPS server (--ca-file, BULWARK_CA_FILE).
	caFile string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes bulwarkctl with args (without the program name) and returns
// the exit code. Tests call it in-process.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("bulwarkctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.globalFlags(fs)
	showVersion := fs.Bool("version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "bulwarkctl: %v\n\n", err)
		printUsage(stderr)
		return exitUsage
	}
	rest := fs.Args()
	if *showVersion {
		return runVersion(e, rest)
	}
	if len(rest) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	c := lookup(rest[0])
	if c == nil {
		fmt.Fprintf(stderr, "bulwarkctl: unknown command %q%s\n\n", rest[0], suggestCommand(rest[0]))
		printUsage(stderr)
		return exitUsage
	}
	return c.run(e, rest[1:])
}

// globalFlags registers --server, --token and --ca-file on fs, with their environment
// defaults. Every subcommand's flag set registers them too, so they may come
// before or after the command name.
func (e *env) globalFlags(fs *flag.FlagSet) {
	server := os.Getenv("BULWARK_SERVER")
	if server == "" {
		server = defaultServer
	}
	if e.server == "" {
		e.server = server
	}
	if e.token == "" {
		e.token = os.Getenv("BULWARK_TOKEN")
	}
	if e.caFile == "" {
		e.caFile = os.Getenv("BULWARK_CA_FILE")
	}
	fs.StringVar(&e.server, "server", e.server, "admin API base URL (env BULWARK_SERVER)")
	fs.StringVar(&e.token, "token", e.token, "bearer token for the admin API (env BULWARK_TOKEN)")
	fs.StringVar(&e.caFile, "ca-file", e.caFile, "PEM CA that signed the server's certificate, for https (env BULWARK_CA_FILE)")
}

// suggestCommand renders the command a mistyped name probably meant, as
// ` (did you mean "status"?)`, or "".
func suggestCommand(name string) string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	if c := policies.Closest(name, names); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

func lookup(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return &c
		}
	}
	return nil
}

// newFlagSet returns a flag set for a subcommand that prints its usage on -h
// and includes the global flags.
func (e *env) newFlagSet(c string) *flag.FlagSet {
	fs := flag.NewFlagSet("bulwarkctl "+c, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.globalFlags(fs)
	return fs
}

// parse parses a subcommand's flags. It returns an exit code and false when
// the command must stop: after -h (exit 0) or on a usage error (exit 2).
func (e *env) parse(fs *flag.FlagSet, name string, args []string) (int, bool) {
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case err == nil:
		return exitOK, true
	case errors.Is(err, flag.ErrHelp):
		printCommandUsage(e.stdout, name, fs)
		return exitOK, false
	default:
		return e.usageError(fs, name, err.Error()), false
	}
}

// usageError reports a usage problem with the command's usage and returns exitUsage.
func (e *env) usageError(fs *flag.FlagSet, name, msg string) int {
	fmt.Fprintf(e.stderr, "bulwarkctl %s: %s\n\n", name, msg)
	printCommandUsage(e.stderr, name, fs)
	return exitUsage
}

func printUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString("bulwarkctl manages Bulwark resilience policies.\n\nUsage:\n  bulwarkctl [--server URL] [--token TOKEN] [--ca-file FILE] COMMAND [flags]\n")
	width := 0
	for _, c := range commands() {
		width = max(width, len(c.name))
	}
	for _, g := range []string{groupOffline, groupServer, groupOther} {
		header := false
		for _, c := range commands() {
			if c.group != g {
				continue
			}
			if !header {
				b.WriteString("\n" + g + ":\n")
				header = true
			}
			fmt.Fprintf(&b, "  %-*s  %s\n", width, c.name, c.summary)
		}
	}
	b.WriteString("\nGlobal flags:\n")
	fmt.Fprintf(&b, "  --server URL    admin API base URL (default %s, env BULWARK_SERVER)\n", defaultServer)
	b.WriteString("  --token TOKEN   bearer token for the admin API (env BULWARK_TOKEN)\n")
	b.WriteString("  --ca-file FILE  PEM CA that signed the server's certificate, for https (env BULWARK_CA_FILE)\n")
	b.WriteString("\nExit codes: 0 ok, 1 validation error or error finding, 2 usage error, 3 server unreachable.\n")
	b.WriteString("Run 'bulwarkctl help COMMAND' for a command's flags.\n")
	io.WriteString(w, b.String())
}

func printCommandUsage(w io.Writer, name string, fs *flag.FlagSet) {
	c := lookup(name)
	if c == nil {
		return
	}
	fmt.Fprintf(w, "Usage: bulwarkctl %s\n\n%s\n", c.usage, capitalize(c.summary)+".")
	if fs == nil {
		return
	}
	fmt.Fprintln(w, "\nFlags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
