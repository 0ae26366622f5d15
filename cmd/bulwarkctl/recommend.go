package main

import (
	"bytes"
	"fmt"
	"net/url"
	"strconv"
	"text/tabwriter"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
)

// runRecommend shows the timeouts recommended from observed latency; -o yaml
// prints them as ResiliencePolicies to apply.
func runRecommend(e *env, args []string) int {
	fs := e.newFlagSet("recommend")
	service := fs.String("service", "", "only this service")
	window := fs.String("window", "1h", "how far back to look, such as 1h or 30m")
	output := outputFlag(fs, "table", "yaml", "json")
	if _, code, ok := e.parseArgs(fs, "recommend", args, 0, 0); !ok {
		return code
	}
	if err := checkOutput(*output, "table", "yaml", "json"); err != nil {
		return e.usageError(fs, "recommend", err.Error())
	}
	c, err := e.newClient()
	if err != nil {
		return e.usageError(fs, "recommend", err.Error())
	}
	q := url.Values{"window": {*window}}
	if *service != "" {
		q.Set("service", *service)
	}
	var rep api.RecommendationReport
	if err := c.call("GET", "/v1/recommendations?"+q.Encode(), "", nil, &rep); err != nil {
		return e.fail("recommend", err)
	}
	if *output == "json" {
		if err := writeJSON(e.stdout, rep); err != nil {
			return e.fail("recommend", err)
		}
		return exitOK
	}
	printWarnings(e.stderr, rep.Findings)
	if *output == "yaml" {
		rs := make([]policies.Resource, len(rep.Policies))
		for i, p := range rep.Policies {
			rs[i] = p
		}
		if len(rs) == 0 {
			fmt.Fprintln(e.stderr, "no recommendation: "+noneWhy(rep))
			return exitOK
		}
		if err := resourceYAML(e.stdout, rs); err != nil {
			return e.fail("recommend", err)
		}
		return exitOK
	}
	if len(rep.Items) == 0 {
		fmt.Fprintln(e.stdout, "no recommendation: "+noneWhy(rep))
		return exitOK
	}
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CALLER\tSERVICE\tFLAVOR\tCALLS\tP50\tP99\tP99.9\tERRORS\tTIMEOUT\tPER-TRY\tRECOMMENDED\tPER-TRY\tWHY-NOT")
	for _, it := range rep.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", it.Caller, it.Service, it.Flavor, it.Requests,
			msStr(it.P50Ms), msStr(it.P99Ms), msStr(it.P999Ms), pctStr(it.ErrorRate), orDash(it.ConfiguredRequest), orDash(it.ConfiguredPerTry),
			orDash(it.RecommendedRequest), orDash(it.RecommendedPerTry), orDash(it.Reason))
	}
	tw.Flush()
	e.stdout.Write(buf.Bytes())
	fmt.Fprintf(e.stdout, "\nwindow %s; rule: %s\n", rep.Window, rep.Rule)
	return exitOK
}

func noneWhy(rep api.RecommendationReport) string {
	for _, it := range rep.Items {
		if it.Reason != "" {
			return it.Caller + " → " + it.Service + ": " + it.Reason
		}
	}
	return fmt.Sprintf("no calls observed in the last %s", rep.Window)
}

func msStr(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 1, 64) + "ms"
}

func pctStr(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v*100, 'f', 2, 64) + "%"
}
