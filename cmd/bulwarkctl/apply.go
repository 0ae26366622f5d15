package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
)

// serverGuardrails validates locally without the server's caps, which only
// the server knows; it enforces them on the write.
var serverGuardrails = policies.ValidateOptions{MaxExperimentDuration: time.Duration(math.MaxInt64), MaxFaultPercent: 100}

// readBundle reads and checks PATH offline, so problems name file, document
// and field before anything is sent. It prints the problems and returns an
// exit code and false when there are any.
func (e *env) readBundle(cmd, path string) (*bundle, int, bool) {
	b, probs, err := check(path, e.stdin, serverGuardrails)
	if err != nil {
		fmt.Fprintf(e.stderr, "bulwarkctl %s: %v\n", cmd, err)
		return nil, exitFailed, false
	}
	if len(probs) > 0 {
		reportProblems(e.stderr, probs)
		return nil, exitFailed, false
	}
	return b, exitOK, true
}

// bundleBody encodes a bundle as {"items": [...]}.
func bundleBody(b *bundle) ([]byte, error) {
	items := make([]policies.Resource, len(b.items))
	for i, it := range b.items {
		items[i] = it.res
	}
	return json.Marshal(map[string]any{"items": items})
}

// runApply writes files to the server in one atomic apply.
func runApply(e *env, args []string) int {
	fs := e.newFlagSet("apply")
	path := fs.String("f", "", "a file, a directory (recursive: *.yaml, *.yml, *.json) or - for stdin")
	dryRun := fs.Bool("dry-run", false, "show what would change, and the lint warnings, without writing")
	prune := fs.Bool("prune", false, "delete what --source applied before and the files no longer declare")
	source := fs.String("source", "", "recorded on every resource written; with --prune, what may be deleted (e.g. ci, team-payments)")
	force := fs.Bool("force", false, "also change resources a directory sync owns (its next pass restores them)")
	yes := fs.Bool("yes", false, "with --prune: delete without asking")
	output := outputFlag(fs, "table", "json")
	if _, code, ok := e.parseArgs(fs, "apply", args, 0, 0); !ok {
		return code
	}
	switch {
	case *path == "":
		return e.usageError(fs, "apply", "-f is required")
	case *prune && *source == "":
		return e.usageError(fs, "apply", "--prune needs --source: it deletes only what that source applied")
	}
	if err := checkOutput(*output, "table", "json"); err != nil {
		return e.usageError(fs, "apply", err.Error())
	}
	c, err := e.newClient()
	if err != nil {
		return e.usageError(fs, "apply", err.Error())
	}
	b, code, ok := e.readBundle("apply", *path)
	if !ok {
		return code
	}
	body, err := bundleBody(b)
	if err != nil {
		return e.fail("apply", err)
	}
	q := url.Values{}
	if *dryRun {
		q.Set("dryRun", "true")
	}
	if *prune {
		q.Set("prune", "true")
	}
	if *source != "" {
		q.Set("source", *source)
	}
	if *force {
		q.Set("force", "true")
	}
	target := "/v1/apply"
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	if *prune && !*dryRun && !*yes {
		if code, ok := e.confirmPrune(c, target, body); !ok {
			return code
		}
	}
	var raw []byte
	if err := c.call("POST", target, "application/json", body, &raw); err != nil {
		return e.fail("apply", err)
	}
	if *output == "json" {
		if err := writeRawJSON(e.stdout, raw); err != nil {
			return e.fail("apply", err)
		}
		return exitOK
	}
	var res api.ApplyResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return e.fail("apply", err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	counts := map[string]int{}
	for _, it := range res.Items {
		counts[it.Action]++
		fmt.Fprintf(tw, "%s\t%s\t%s\n", it.Action, it.Kind, it.Name)
	}
	tw.Flush()
	summary := fmt.Sprintf("%d created, %d updated, %d deleted, %d unchanged", counts[api.ActionCreated], counts[api.ActionUpdated], counts[api.ActionDeleted], counts[api.ActionUnchanged])
	if n := counts[api.ActionSkipped]; n > 0 {
		summary += fmt.Sprintf(", %d skipped", n)
	}
	if res.DryRun {
		fmt.Fprintf(e.stdout, "dry run, nothing written: %s\n", summary)
	} else {
		fmt.Fprintf(e.stdout, "applied at revision %d: %s\n", res.Revision, summary)
	}
	printWarnings(e.stderr, res.Warnings)
	return exitOK
}
