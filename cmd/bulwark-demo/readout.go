package main

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// Stats is the readout: every caller's and every upstream's numbers over the
// last window. GET /v1/stats on the control address answers it as JSON.
type Stats struct {
	// Window is the span the numbers cover, in seconds.
	Window float64 `json:"window"`
	Admin  string  `json:"admin"` // the control plane's admin API
	XDS    string  `json:"xds"`
	// Policies and Experiments name what is in force in the control plane
	// (nil when its admin API did not answer).
	Policies    []string        `json:"policies"`
	Experiments []string        `json:"experiments"`
	Callers     []CallerStats   `json:"callers"`
	Upstreams   []UpstreamStats `json:"upstreams"`
}

// CallerStats is one caller's row: calls to one service through the mesh.
type CallerStats struct {
	Name    string  `json:"name"` // the service called
	Via     string  `json:"via"`
	Calls   int     `json:"calls"`
	RPS     float64 `json:"rps"`
	Success float64 `json:"success"` // percent of calls that succeeded
	// Latency percentiles in milliseconds, of every call (failed ones too).
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	// Errors counts failed calls by how they ended (gRPC code, HTTP status).
	Errors map[string]int `json:"errors"`
}

// UpstreamStats is one upstream instance's row.
type UpstreamStats struct {
	Name     string    `json:"name"`
	Service  string    `json:"service"`
	Protocol string    `json:"protocol"`
	Address  string    `json:"address"`
	State    Behaviour `json:"state"`
	RPS      float64   `json:"rps"` // calls that reached it
}

// render draws the readout as a table.
func (s Stats) render() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Bulwark demo: admin API %s, xDS %s; the last %gs\n", s.Admin, s.XDS, s.Window)
	fmt.Fprintf(&b, "Policies: %s. Experiments: %s.\n\n", names(s.Policies), names(s.Experiments))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CALLS TO\tVIA\tRPS\tSUCCESS\tP50\tP90\tP99\tERRORS")
	for _, c := range s.Callers {
		if c.Calls == 0 {
			fmt.Fprintf(tw, "%s\t%s\t0\t-\t-\t-\t-\t\n", c.Name, c.Via)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.1f%%\t%s\t%s\t%s\t%s\n", c.Name, c.Via, c.RPS, c.Success,
			fmtMS(c.P50), fmtMS(c.P90), fmtMS(c.P99), errorsString(c.Errors, c.Calls))
	}
	tw.Flush()
	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "UPSTREAM\tSERVICE\tADDRESS\tSTATE\tRPS")
	for _, u := range s.Upstreams {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\n", u.Name, u.Service, u.Protocol+"://"+u.Address, u.State, u.RPS)
	}
	tw.Flush()
	return b.String()
}

// names lists names, or says there are none.
func names(ns []string) string {
	switch {
	case ns == nil:
		return "?"
	case len(ns) == 0:
		return "none"
	}
	return strings.Join(ns, ", ")
}

// fmtMS prints milliseconds the way people read them: 3ms, 250ms, 1.20s.
func fmtMS(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2fs", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.0fms", v)
	}
	return fmt.Sprintf("%.1fms", v)
}

// errorsString lists the ways calls failed, most frequent first, as shares.
func errorsString(errs map[string]int, calls int) string {
	keys := slices.Collect(maps.Keys(errs))
	slices.SortFunc(keys, func(a, b string) int {
		if errs[a] != errs[b] {
			return errs[b] - errs[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", k, 100*float64(errs[k])/float64(calls)))
	}
	return strings.Join(parts, ", ")
}

// row finds a caller or an upstream by name: wait's subject.
func (s Stats) row(name string) (metrics map[string]float64, ok bool) {
	for _, c := range s.Callers {
		if c.Name == name {
			success := c.Success
			if c.Calls == 0 {
				success = 0
			}
			return map[string]float64{"rps": c.RPS, "success": success, "p50": c.P50, "p90": c.P90, "p99": c.P99, "calls": float64(c.Calls)}, true
		}
	}
	for _, u := range s.Upstreams {
		if u.Name == name {
			return map[string]float64{"rps": u.RPS}, true
		}
	}
	return nil, false
}
