package main

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
)

// runCompletion prints a completion script for bash or zsh, built from the
// command table and each command's flags, so it never lists a command or a
// flag that does not exist.
//
//	source <(bulwarkctl completion bash)          # bash, or in ~/.bashrc
//	source <(bulwarkctl completion zsh)           # zsh, after compinit
func runCompletion(e *env, args []string) int {
	fs := e.newFlagSet("completion")
	pos, code, ok := e.parseArgs(fs, "completion", args, 1, 1)
	if !ok {
		return code
	}
	cmds := completionCommands(e)
	switch pos[0] {
	case "bash":
		writeBashCompletion(e.stdout, cmds)
	case "zsh":
		writeZshCompletion(e.stdout, cmds)
	default:
		return e.usageError(fs, "completion", fmt.Sprintf("unknown shell %q: use bash or zsh", pos[0]))
	}
	return exitOK
}

// completionCommand is a command and its flags, as completion offers them.
type completionCommand struct {
	name, summary string
	flags         []string // "--f", "--server", ...
	args          []string // words for the positional arguments (kinds, subcommands)
}

var flagLine = regexp.MustCompile(`(?m)^  -([a-z][a-z0-9-]*)`)

// completionCommands reads every command's flags from its -h output, the
// same text `bulwarkctl help COMMAND` prints.
func completionCommands(e *env) []completionCommand {
	var out []completionCommand
	for _, c := range commands() {
		cc := completionCommand{name: c.name, summary: c.summary}
		helps := [][]string{{"-h"}}
		switch c.name {
		case "help":
			helps = nil
		case "chaos": // the flags of its subcommands
			helps = [][]string{{"start", "-h"}, {"stop", "-h"}, {"list", "-h"}}
		}
		seen := map[string]bool{}
		for _, h := range helps {
			var buf bytes.Buffer
			sub := &env{stdin: e.stdin, stdout: &buf, stderr: io.Discard}
			c.run(sub, h)
			for _, m := range flagLine.FindAllStringSubmatch(buf.String(), -1) {
				dash := "--"
				if len(m[1]) == 1 {
					dash = "-" // -f, -o, as the docs write them
				}
				if !seen[m[1]] {
					seen[m[1]] = true
					cc.flags = append(cc.flags, dash+m[1])
				}
			}
		}
		sort.Strings(cc.flags)
		switch c.name {
		case "get", "delete":
			cc.args = []string{"services", "policies", "experiments"}
		case "chaos":
			cc.args = []string{"start", "stop", "list"}
		case "completion":
			cc.args = []string{"bash", "zsh"}
		case "help":
			for _, h := range commands() {
				cc.args = append(cc.args, h.name)
			}
		}
		out = append(out, cc)
	}
	return out
}

func writeBashCompletion(w io.Writer, cmds []completionCommand) {
	var names []string
	for _, c := range cmds {
		names = append(names, c.name)
	}
	var b strings.Builder
	b.WriteString(`# bash completion for bulwarkctl. Load it with:
#   source <(bulwarkctl completion bash)
_bulwarkctl() {
    local cur prev cmd i
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    cmd=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            --server|-server|--token|-token|--ca-file|-ca-file) ((i++)) ;;
            -*) ;;
            *) cmd=${COMP_WORDS[i]}; break ;;
        esac
    done
    case $prev in
        -f|--f|--ca-file|-ca-file) COMPREPLY=(); return ;; # files: the default
    esac
    local words
    case $cmd in
`)
	fmt.Fprintf(&b, "        \"\") words=%q ;;\n", strings.Join(append(names, "--server", "--token", "--ca-file", "--version", "--help"), " "))
	for _, c := range cmds {
		fmt.Fprintf(&b, "        %s) words=%q ;;\n", c.name, strings.Join(append(c.args, c.flags...), " "))
	}
	b.WriteString(`        *) words="" ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _bulwarkctl bulwarkctl
`)
	io.WriteString(w, b.String())
}

func writeZshCompletion(w io.Writer, cmds []completionCommand) {
	var b strings.Builder
	b.WriteString(`#compdef bulwarkctl
# zsh completion for bulwarkctl. Load it with (after compinit):
#   source <(bulwarkctl completion zsh)
_bulwarkctl() {
    local cmd i
    local -a commands words_
    commands=(
`)
	for _, c := range cmds {
		fmt.Fprintf(&b, "        %s\n", zshQuote(c.name+":"+c.summary))
	}
	b.WriteString(`    )
    for ((i = 2; i < CURRENT; i++)); do
        case ${words[i]} in
            --server|-server|--token|-token|--ca-file|-ca-file) ((i++)) ;;
            -*) ;;
            *) cmd=${words[i]}; break ;;
        esac
    done
    case ${words[CURRENT-1]} in
        -f|--f|--ca-file|-ca-file) _files; return ;;
    esac
    case $cmd in
        "") _describe -t commands 'bulwarkctl command' commands; compadd -- --server --token --ca-file --version --help; return ;;
`)
	for _, c := range cmds {
		var ws []string
		for _, x := range append(c.args, c.flags...) {
			ws = append(ws, zshQuote(x))
		}
		fmt.Fprintf(&b, "        %s) words_=(%s) ;;\n", c.name, strings.Join(ws, " "))
	}
	b.WriteString(`    esac
    compadd -- $words_
    _files
}
if (( $+functions[compdef] )); then
    compdef _bulwarkctl bulwarkctl
fi
`)
	io.WriteString(w, b.String())
}

// zshQuote single-quotes s for a zsh script.
func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
