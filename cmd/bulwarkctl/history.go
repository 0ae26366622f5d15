package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// runHistory prints the write history: who changed what, when, newest first.
func runHistory(e *env, args []string) int {
	fs := e.newFlagSet("history")
	limit := fs.Int("limit", 20, "at most this many writes")
	output := outputFlag(fs, "table", "json")
	if _, code, ok := e.parseArgs(fs, "history", args, 0, 0); !ok {
		return code
	}
	if err := checkOutput(*output, "table", "json"); err != nil {
		return e.usageError(fs, "history", err.Error())
	}
	if *limit < 1 {
		return e.usageError(fs, "history", "--limit must be at least 1")
	}
	c, err := e.newClient()
	if err != nil {
		return e.usageError(fs, "history", err.Error())
	}
	var raw []byte
	if err := c.call("GET", "/v1/history?limit="+strconv.Itoa(*limit), "", nil, &raw); err != nil {
		return e.fail("history", err)
	}
	if *output == "json" {
		if err := writeRawJSON(e.stdout, raw); err != nil {
			return e.fail("history", err)
		}
		return exitOK
	}
	var h api.WriteHistory
	if err := json.Unmarshal(raw, &h); err != nil {
		return e.fail("history", err)
	}
	if len(h.Items) == 0 {
		fmt.Fprintln(e.stdout, "no writes recorded")
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tTIME\tWHO\tOPERATION\tACTION\tKIND\tNAME\tBEFORE\tAFTER")
	for _, r := range h.Items {
		op := r.Operation
		if r.Source != "" {
			op += " --source " + r.Source
		}
		if r.Prune {
			op += " --prune"
		}
		for _, it := range r.Items {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Revision, r.Time.Local().Format(time.DateTime), r.Who, op,
				it.Action, it.Kind, it.Name, revOrDash(it.RevisionBefore), revOrDash(it.RevisionAfter))
		}
	}
	tw.Flush()
	return exitOK
}

func revOrDash(r int64) string {
	if r == 0 {
		return "-"
	}
	return strconv.FormatInt(r, 10)
}

// runVersion prints bulwarkctl's version and, when the server answers,
// the server's. An unreachable server is not an error: the client's version
// is still the answer.
func runVersion(e *env, args []string) int {
	fs := e.newFlagSet("version")
	output := outputFlag(fs, "text", "json")
	if _, code, ok := e.parseArgs(fs, "version", args, 0, 0); !ok {
		return code
	}
	if err := checkOutput(*output, "text", "json"); err != nil {
		return e.usageError(fs, "version", err.Error())
	}
	out := struct {
		Client      api.VersionInfo  `json:"client"`
		Server      *api.VersionInfo `json:"server,omitempty"`
		ServerError string           `json:"serverError,omitempty"`
	}{Client: api.BuildVersion()}
	c, err := e.newClient()
	if err == nil {
		var v api.VersionInfo
		if err = c.call("GET", "/v1/version", "", nil, &v); err == nil {
			out.Server = &v
		}
	}
	if err != nil {
		out.ServerError = err.Error()
	}
	if *output == "json" {
		if err := writeJSON(e.stdout, out); err != nil {
			return e.fail("version", err)
		}
		return exitOK
	}
	fmt.Fprintf(e.stdout, "client: bulwarkctl %s\n", out.Client)
	if out.Server != nil {
		fmt.Fprintf(e.stdout, "server: bulwark %s at %s\n", out.Server, e.server)
	} else {
		fmt.Fprintf(e.stdout, "server: unknown (%s)\n", out.ServerError)
	}
	return exitOK
}
