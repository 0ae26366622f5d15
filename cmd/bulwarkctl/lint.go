package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/prom"
	"github.com/bulwarkmesh/bulwark/controlplane/recommend"
	"github.com/bulwarkmesh/bulwark/policies"
)

// severityRank orders severities for --min-severity: higher is more serious.
var severityRank = map[policies.Severity]int{
	policies.SeverityInfo:    0,
	policies.SeverityWarning: 1,
	policies.SeverityError:   2,
}

// runLint reports what is legal but probably wrong in a set of policy files.
// It exits 1 when the files do not validate or a finding has severity error.
func runLint(e *env, args []string) int {
	fs := e.newFlagSet("lint")
	path := fs.String("f", "", "a file, a directory (recursive: *.yaml, *.yml, *.json) or - for stdin")
	output := fs.String("o", "table", "output format: table or json")
	minSeverity := fs.String("min-severity", string(policies.SeverityInfo), "show findings of this severity and above: info, warning or error")
	guardrails := guardrailFlags(fs)
	promURL := fs.String("prometheus-url", "", "also lint the request timeouts against the latency this Prometheus observed (below the p99, or far above it)")
	promWindow := fs.Duration("prometheus-window", time.Hour, "how far back --prometheus-url looks")
	if code, ok := e.parse(fs, "lint", args); !ok {
		return code
	}
	minRank, known := severityRank[policies.Severity(*minSeverity)]
	switch {
	case *path == "":
		return e.usageError(fs, "lint", "-f is required")
	case *output != "table" && *output != "json":
		return e.usageError(fs, "lint", "-o must be table or json")
	case !known:
		return e.usageError(fs, "lint", fmt.Sprintf("--min-severity must be info, warning or error (got %q)", *minSeverity))
	}
	b, probs, err := check(*path, e.stdin, *guardrails)
	if err != nil {
		fmt.Fprintf(e.stderr, "bulwarkctl lint: %v\n", err)
		return exitFailed
	}
	if len(probs) > 0 {
		// Lint judges a whole, valid set: these come first.
		reportProblems(e.stderr, probs)
		return exitFailed
	}
	all := policies.Lint(b.set())
	if *promURL != "" {
		obs, err := observedFindings(*promURL, b.set(), *promWindow)
		if err != nil {
			fmt.Fprintf(e.stderr, "bulwarkctl lint: %v\n", err)
			return exitUnreachable
		}
		all = append(all, obs...)
	}
	var shown []policies.Finding
	for _, f := range all {
		if severityRank[f.Severity] >= minRank {
			shown = append(shown, f)
		}
	}
	if *output == "json" {
		err = writeFindingsJSON(e.stdout, shown)
	} else {
		err = writeFindingsTable(e.stdout, shown)
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "bulwarkctl lint: %v\n", err)
		return exitFailed
	}
	if policies.HasErrors(all) {
		return exitFailed
	}
	return exitOK
}

// writeFindingsTable prints findings as an aligned table and a count by
// severity, or a line saying there are none.
func writeFindingsTable(w io.Writer, fs []policies.Finding) error {
	if len(fs) == 0 {
		_, err := fmt.Fprintln(w, "no findings")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEVERITY\tKIND\tNAME\tFIELD\tMESSAGE")
	counts := map[policies.Severity]int{}
	for _, f := range fs {
		counts[f.Severity]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Severity, f.Kind, f.Name, orDash(f.Field), f.Message)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var parts []string
	for _, s := range []struct {
		sev       policies.Severity
		one, many string
	}{{policies.SeverityError, "error", "errors"}, {policies.SeverityWarning, "warning", "warnings"}, {policies.SeverityInfo, "info", "infos"}} {
		if n := counts[s.sev]; n > 0 {
			parts = append(parts, plural(n, s.one, s.many))
		}
	}
	_, err := fmt.Fprintf(w, "\n%s\n", strings.Join(parts, ", "))
	return err
}

// writeFindingsJSON prints findings as a JSON array of
// {severity, kind, name, field, message}, empty when there are none.
func writeFindingsJSON(w io.Writer, fs []policies.Finding) error {
	if fs == nil {
		fs = []policies.Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(fs)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// observedFindings lints the set's request timeouts against what the
// Prometheus at url observed, with the server's default query templates.
func observedFindings(url string, set *policies.Set, window time.Duration) ([]policies.Finding, error) {
	c, err := prom.New(prom.Config{URL: url})
	if err != nil {
		return nil, err
	}
	r := &recommend.Recommender{Q: c, T: prom.DefaultTemplates()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := r.Report(ctx, set, "", window)
	if err != nil {
		return nil, err
	}
	return rep.Findings, nil
}
