package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
)

// runChaos starts, stops and lists chaos experiments.
func runChaos(e *env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		w := e.stdout
		code := exitOK
		if len(args) == 0 {
			w, code = e.stderr, exitUsage
		}
		printCommandUsage(w, "chaos", nil)
		fmt.Fprint(w, "\nSubcommands:\n"+
			"  start -f FILE          start the experiments of FILE (each runs for its spec.duration)\n"+
			"  run -f FILE [--wait] [--force]\n"+
			"                         start one experiment; --wait streams its steady-state readings and\n"+
			"                         exits 0 when its hypothesis held, 1 when it failed or was aborted\n"+
			"  stop [NAME]            stop one experiment, or every running one (the kill switch)\n"+
			"  list [--history]       the running experiments, or every recorded run\n")
		return code
	}
	switch args[0] {
	case "start":
		return chaosStart(e, args[1:])
	case "run":
		return chaosRun(e, args[1:])
	case "stop":
		return chaosStop(e, args[1:])
	case "list":
		return chaosList(e, args[1:])
	}
	fmt.Fprintf(e.stderr, "bulwarkctl chaos: unknown subcommand %q: use start, run, stop or list\n", args[0])
	return exitUsage
}

func chaosStart(e *env, args []string) int {
	fs := e.newFlagSet("chaos")
	path := fs.String("f", "", "a file (or - for stdin) of ChaosExperiment resources")
	if _, code, ok := e.parseArgs(fs, "chaos", args, 0, 0); !ok {
		return code
	}
	if *path == "" {
		return e.usageError(fs, "chaos", "start needs -f FILE")
	}
	c, err := e.newClient()
	if err != nil {
		return e.usageError(fs, "chaos", err.Error())
	}
	b, code, ok := e.readBundle("chaos start", *path)
	if !ok {
		return code
	}
	for _, it := range b.items {
		if it.kind() != policies.KindExperiment {
			fmt.Fprintf(e.stderr, "bulwarkctl chaos start: %s: document %d is a %s %s; chaos start takes ChaosExperiments only (use apply for the rest)\n", it.file, it.index, it.kind(), it.name())
			return exitFailed
		}
	}
	for _, it := range b.items {
		body, err := json.Marshal(it.res)
		if err != nil {
			return e.fail("chaos start", err)
		}
		var res writeAnswer
		if err := c.call("PUT", "/v1/experiments/"+url.PathEscape(it.name()), "application/json", body, &res); err != nil {
			return e.fail("chaos start", err)
		}
		x, err := policies.DecodeStored(res.Resource)
		if err != nil {
			return e.fail("chaos start", err)
		}
		exp := x.(*policies.ChaosExperiment)
		ends := "-"
		if exp.Status != nil {
			ends = exp.Status.EndsAt
		}
		verb := "started"
		if res.Action == api.ActionUnchanged {
			verb = "already running"
		}
		fmt.Fprintf(e.stdout, "%s %s on %s (%s) until %s\n", verb, res.Name, targetString(exp.Spec.Target), faultString(exp.Spec), ends)
		printWarnings(e.stderr, res.Warnings)
	}
	return exitOK
}

func chaosStop(e *env, args []string) int {
	fs := e.newFlagSet("chaos")
	pos, code, ok := e.parseArgs(fs, "chaos", args, 0, 1)
	if !ok {
		return code
	}
	c, err := e.newClient()
	if err != nil {
		return e.usageError(fs, "chaos", err.Error())
	}
	if len(pos) == 1 {
		var res writeAnswer
		if err := c.call("DELETE", "/v1/experiments/"+url.PathEscape(pos[0]), "", nil, &res); err != nil {
			return e.fail("chaos stop", err)
		}
		fmt.Fprintf(e.stdout, "stopped %s\n", res.Name)
		return exitOK
	}
	var res api.KillSwitchResult
	if err := c.call("POST", "/v1/experiments/stop", "", nil, &res); err != nil {
		return e.fail("chaos stop", err)
	}
	if len(res.Stopped) == 0 {
		fmt.Fprintln(e.stdout, "no experiment was running")
		return exitOK
	}
	fmt.Fprintf(e.stdout, "stopped %s\n", strings.Join(res.Stopped, ", "))
	return exitOK
}

func chaosList(e *env, args []string) int {
	fs := e.newFlagSet("chaos")
	history := fs.Bool("history", false, "every recorded run (running, expired, stopped), newest first")
	output := outputFlag(fs, "table", "yaml", "json")
	if _, code, ok := e.parseArgs(fs, "chaos", args, 0, 0); !ok {
		return code
	}
	if err := checkOutput(*output, "table", "yaml", "json"); err != nil {
		return e.usageError(fs, "chaos", err.Error())
	}
	c, err := e.newClient()
	if err != nil {
		return e.usageError(fs, "chaos", err.Error())
	}
	path := "/v1/experiments"
	if *history {
		path = "/v1/experiments/history"
	}
	var list listAnswer
	if err := c.call("GET", path, "", nil, &list); err != nil {
		return e.fail("chaos list", err)
	}
	if *output == "json" {
		if err := writeJSON(e.stdout, list.Items); err != nil {
			return e.fail("chaos list", err)
		}
		return exitOK
	}
	rs, err := decodeStored(list.Items)
	if err != nil {
		return e.fail("chaos list", err)
	}
	if *output == "yaml" {
		if err := resourceYAML(e.stdout, rs); err != nil {
			return e.fail("chaos list", err)
		}
		return exitOK
	}
	if !*history {
		if len(rs) == 0 {
			fmt.Fprintln(e.stdout, "no experiment running")
			return exitOK
		}
		if err := resourceTable(e.stdout, policies.KindExperiment, rs); err != nil {
			return e.fail("chaos list", err)
		}
		return exitOK
	}
	if len(rs) == 0 {
		fmt.Fprintln(e.stdout, "no experiment has run")
		return exitOK
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTARGET\tFAULT\tOUTCOME\tVERDICT\tSTARTED\tENDED\tSTARTED-BY\tSTOPPED-BY")
	for _, r := range rs {
		x := r.(*policies.ChaosExperiment)
		st := x.Status
		if st == nil {
			st = &policies.ExperimentStatus{}
		}
		ended := st.EndedAt
		if ended == "" {
			ended = "ends " + st.EndsAt
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.Metadata.Name, targetString(x.Spec.Target), faultString(x.Spec), orDash(st.Outcome), orDash(st.Verdict), orDash(st.StartedAt), ended, orDash(st.StartedBy), orDash(st.StoppedBy))
	}
	tw.Flush()
	e.stdout.Write(buf.Bytes())
	return exitOK
}
