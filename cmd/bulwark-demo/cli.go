package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// clientFlags registers --control on fs.
func clientFlags(fs *flag.FlagSet) *string {
	def := os.Getenv("BULWARK_DEMO_CONTROL")
	if def == "" {
		def = defaultControl
	}
	return fs.String("control", def, "the running demo's control endpoint (env BULWARK_DEMO_CONTROL)")
}

func newControlClient(base string) controlClient {
	return controlClient{base: strings.TrimSuffix(base, "/"), http: &http.Client{Timeout: 10 * time.Second}}
}

// exitFor maps a client error to an exit code, printing it.
func exitFor(stderr io.Writer, cmd string, err error) int {
	fmt.Fprintf(stderr, "bulwark-demo %s: %v\n", cmd, err)
	if errors.Is(err, errUnreachable) {
		return 3
	}
	return 1
}

// parseInterleaved parses flags that may come before or after positional
// arguments ("upstream payments-2 --latency 1s").
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// runUpstream changes one upstream instance or every instance of a service.
func runUpstream(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bulwark-demo upstream", flag.ContinueOnError)
	fs.SetOutput(stderr)
	control := clientFlags(fs)
	latency := fs.String("latency", "", "add this latency to every call (0 removes it)")
	errs := fs.String("errors", "", "fail this percentage of calls (0 stops failing)")
	down := fs.Bool("down", false, "stop the instance: nothing listens on its port")
	up := fs.Bool("up", false, "start the instance again on the same port")
	reset := fs.Bool("reset", false, "back to normal: no latency, no errors, up")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "bulwark-demo upstream: want one NAME (an instance such as payments-2, or a service such as payments)")
		return 2
	}
	if *down && *up {
		fmt.Fprintln(stderr, "bulwark-demo upstream: --down and --up contradict each other")
		return 2
	}
	c := change{Reset: *reset}
	if *latency != "" {
		c.Latency = latency
	}
	if *errs != "" {
		v, err := strconv.ParseFloat(strings.TrimSuffix(*errs, "%"), 64)
		if err != nil {
			fmt.Fprintf(stderr, "bulwark-demo upstream: --errors: want a percentage such as 50, got %q\n", *errs)
			return 2
		}
		c.Errors = &v
	}
	if *down || *up {
		c.Down = down
	}
	if c == (change{}) {
		fmt.Fprintln(stderr, "bulwark-demo upstream: nothing to change: give --latency, --errors, --down, --up or --reset")
		return 2
	}
	body, _ := json.Marshal(c)
	var out []UpstreamStats
	if err := newControlClient(*control).do(http.MethodPut, "/v1/upstreams/"+url.PathEscape(pos[0]), bytes.NewReader(body), &out); err != nil {
		return exitFor(stderr, "upstream", err)
	}
	for _, u := range out {
		fmt.Fprintf(stdout, "%s: %s\n", u.Name, u.State)
	}
	return 0
}

// runStats prints the readout once.
func runStats(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bulwark-demo stats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	control := clientFlags(fs)
	output := fs.String("o", "table", "table or json")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || (*output != "table" && *output != "json") {
		fmt.Fprintln(stderr, "bulwark-demo stats: usage: stats [-o table|json]")
		return 2
	}
	s, err := newControlClient(*control).stats()
	if err != nil {
		return exitFor(stderr, "stats", err)
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s)
		return 0
	}
	fmt.Fprint(stdout, s.render())
	return 0
}

// threshold is wait's condition: METRIC above|below VALUE.
type threshold struct {
	name, metric string
	above        bool
	value        float64 // in the metric's unit: ms, percent, calls/s
}

// parseThreshold reads NAME METRIC above|below VALUE; latencies take a
// duration (300ms, 1s), success a percentage (99 or 99%).
func parseThreshold(pos []string) (threshold, error) {
	if len(pos) != 4 {
		return threshold{}, errors.New("want NAME METRIC above|below VALUE, such as: wait payments p99 below 400ms")
	}
	t := threshold{name: pos[0], metric: pos[1]}
	switch pos[2] {
	case "above":
		t.above = true
	case "below":
	default:
		return t, fmt.Errorf("want above or below, got %q", pos[2])
	}
	switch t.metric {
	case "p50", "p90", "p99":
		d, err := time.ParseDuration(pos[3])
		if err != nil {
			return t, fmt.Errorf("%s: want a duration such as 400ms, got %q", t.metric, pos[3])
		}
		t.value = ms(d)
	case "success", "rps":
		v, err := strconv.ParseFloat(strings.TrimSuffix(pos[3], "%"), 64)
		if err != nil {
			return t, fmt.Errorf("%s: want a number, got %q", t.metric, pos[3])
		}
		t.value = v
	default:
		return t, fmt.Errorf("unknown metric %q: use success, p50, p90, p99 or rps", t.metric)
	}
	return t, nil
}

// check evaluates the threshold on a readout; it also says the value.
func (t threshold) check(s Stats) (met bool, value string, err error) {
	m, ok := s.row(t.name)
	if !ok {
		return false, "", fmt.Errorf("no caller or upstream %q in the readout", t.name)
	}
	v, ok := m[t.metric]
	if !ok {
		return false, "", fmt.Errorf("%s has no %s: upstreams have rps only", t.name, t.metric)
	}
	switch t.metric {
	case "success":
		value = fmt.Sprintf("%.1f%%", v)
		if m["calls"] == 0 {
			return false, "no calls yet", nil
		}
	case "rps":
		value = fmt.Sprintf("%.0f", v)
	default:
		value = fmtMS(v)
		if m["calls"] == 0 {
			return false, "no calls yet", nil
		}
	}
	if t.above {
		return v > t.value, value, nil
	}
	return v < t.value, value, nil
}

// runWait polls the readout until the threshold holds, or fails after
// --timeout with the last readout.
func runWait(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bulwark-demo wait", flag.ContinueOnError)
	fs.SetOutput(stderr)
	control := clientFlags(fs)
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return 2
	}
	t, err := parseThreshold(pos)
	if err != nil {
		fmt.Fprintln(stderr, "bulwark-demo wait:", err)
		return 2
	}
	c := newControlClient(*control)
	deadline := time.Now().Add(*timeout)
	var last Stats
	value, lastErr := "", error(nil)
	for time.Now().Before(deadline) {
		s, err := c.stats()
		if err == nil {
			last = s
			var met bool
			met, value, err = t.check(s)
			if err != nil {
				return exitFor(stderr, "wait", err)
			}
			if met {
				fmt.Fprintf(stdout, "%s %s is %s, %s %s\n", t.name, t.metric, value, pos[2], pos[3])
				return 0
			}
		}
		lastErr = err
		time.Sleep(250 * time.Millisecond)
	}
	if lastErr != nil {
		return exitFor(stderr, "wait", lastErr)
	}
	fmt.Fprintf(stderr, "bulwark-demo wait: %s %s is %s after %s, not %s %s\n\n%s", t.name, t.metric, value, *timeout, pos[2], pos[3], last.render())
	return 1
}
