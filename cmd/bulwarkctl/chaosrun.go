package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
)

// unreachableFor is how long chaos run --wait keeps trying a server that
// stopped answering before it exits 3.
const unreachableFor = 15 * time.Second

// chaosRun starts one experiment and, with --wait, follows it to its
// verdict: a game day a CI job can repeat. Exit 0 when the hypothesis held,
// 1 when it failed, was aborted or the experiment was refused, 3 when the
// server cannot be reached.
func chaosRun(e *env, args []string) int {
	fs := e.newFlagSet("chaos")
	path := fs.String("f", "", "a file (or - for stdin) holding one ChaosExperiment")
	wait := fs.Bool("wait", false, "follow the experiment to its end, printing its readings; exit 0 when its hypothesis held")
	force := fs.Bool("force", false, "start it even when the system is not steady before the start (recorded)")
	poll := fs.Duration("poll", time.Second, "how often --wait asks the server")
	if _, code, ok := e.parseArgs(fs, "chaos", args, 0, 0); !ok {
		return code
	}
	if *path == "" {
		return e.usageError(fs, "chaos", "run needs -f FILE")
	}
	if *poll <= 0 {
		return e.usageError(fs, "chaos", "--poll must be positive")
	}
	c, err := e.newClient()
	if err != nil {
		return e.usageError(fs, "chaos", err.Error())
	}
	b, code, ok := e.readBundle("chaos run", *path)
	if !ok {
		return code
	}
	if len(b.items) != 1 || b.items[0].kind() != policies.KindExperiment {
		fmt.Fprintf(e.stderr, "bulwarkctl chaos run: %s: want exactly one ChaosExperiment (chaos start takes several)\n", *path)
		return exitFailed
	}
	it := b.items[0]
	body, err := json.Marshal(it.res)
	if err != nil {
		return e.fail("chaos run", err)
	}
	p := "/v1/experiments/" + url.PathEscape(it.name())
	q := ""
	if *force {
		q = "?force=true"
	}
	var res writeAnswer
	if err := c.call("PUT", p+q, "application/json", body, &res); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.prob != nil && ae.prob.Status == http.StatusConflict && len(ae.prob.Readings) > 0 {
			fmt.Fprintf(e.stderr, "bulwarkctl chaos run: %s\n", ae.prob.Detail)
			printReadings(e, "pre-start", ae.prob.Readings)
			return exitFailed
		}
		return e.fail("chaos run", err)
	}
	x, err := policies.DecodeStored(res.Resource)
	if err != nil {
		return e.fail("chaos run", err)
	}
	exp := x.(*policies.ChaosExperiment)
	if exp.Status == nil {
		return e.fail("chaos run", errors.New("the server's answer has no status"))
	}
	verb := "started"
	if res.Action == api.ActionUnchanged {
		verb = "already running; following"
	}
	fmt.Fprintf(e.stdout, "%s %s on %s (%s) until %s\n", verb, res.Name, targetString(exp.Spec.Target), faultString(exp.Spec), exp.Status.EndsAt)
	printWarnings(e.stderr, res.Warnings)
	if !*wait {
		return exitOK
	}
	return follow(e, c, exp, *poll)
}

// follow polls the experiment until it has a verdict, printing readings as
// they come, and returns the exit code of the verdict.
func follow(e *env, c *client, exp *policies.ChaosExperiment, poll time.Duration) int {
	name, started := exp.Metadata.Name, exp.Status.StartedAt
	if exp.Spec.SteadyState == nil {
		fmt.Fprintln(e.stderr, "bulwarkctl chaos run: --wait needs spec.steadyState: without a measured hypothesis there is no verdict")
		return exitUsage
	}
	shown, printedPre := 0, false
	var downSince, goneSince time.Time
	// A run that ended gets its verdict within a tick of the runner; one
	// that has none long after (no runner evaluates it) ends the wait.
	verdictGrace := max(10*time.Second, 3*exp.Spec.SteadyState.SteadyInterval())
	for {
		st, gone, err := steadyOf(c, name, started)
		if err != nil {
			var ae *apiError
			if errors.As(err, &ae) && (ae.status == 0 || ae.status == http.StatusServiceUnavailable) {
				if downSince.IsZero() {
					downSince = time.Now()
				}
				if time.Since(downSince) > unreachableFor {
					return e.fail("chaos run", err)
				}
				time.Sleep(poll)
				continue
			}
			return e.fail("chaos run", err)
		}
		downSince = time.Time{}
		if st != nil {
			if !printedPre && len(st.PreStart) > 0 {
				printReadings(e, "pre-start", st.PreStart)
				if st.Forced {
					fmt.Fprintln(e.stdout, "started with --force although not steady")
				}
				printedPre = true
			}
			if st.Evaluations > shown {
				var last []policies.Reading
				for _, s := range st.Checks {
					if s.Last != nil {
						last = append(last, *s.Last)
					}
				}
				printReadings(e, fmt.Sprintf("evaluation %d", st.Evaluations), last)
				shown = st.Evaluations
			}
			if st.Verdict != "" {
				return verdict(e, name, st)
			}
			if gone && st.Phase == policies.PhaseAborted {
				return verdict(e, name, st)
			}
		}
		if gone {
			if goneSince.IsZero() {
				goneSince = time.Now()
			}
			if time.Since(goneSince) > verdictGrace {
				fmt.Fprintf(e.stderr, "bulwarkctl chaos run: %s ended without a verdict: no replica with --prometheus-url evaluated it\n", name)
				return exitFailed
			}
		}
		time.Sleep(poll)
	}
}

// steadyOf reads the steady-state record of a run: from the running
// experiment, else from its history record (gone is then true).
func steadyOf(c *client, name, started string) (*policies.SteadyStateStatus, bool, error) {
	var raw []byte
	err := c.call("GET", "/v1/experiments/"+url.PathEscape(name), "", nil, &raw)
	var ae *apiError
	switch {
	case err == nil:
		x, err := policies.DecodeStored(raw)
		if err != nil {
			return nil, false, err
		}
		if st := x.(*policies.ChaosExperiment).Status; st != nil && st.StartedAt == started {
			return &st.SteadyStateStatus, false, nil
		}
	case !errors.As(err, &ae) || ae.status != http.StatusNotFound:
		return nil, false, err
	}
	var list api.HistoryList
	if err := c.call("GET", "/v1/history/experiments", "", nil, &list); err != nil {
		return nil, true, err
	}
	for _, h := range list.Items {
		if h.Metadata.Name == name && h.Status != nil && h.Status.StartedAt == started {
			return &h.Status.SteadyStateStatus, true, nil
		}
	}
	return nil, true, nil
}

func verdict(e *env, name string, st *policies.SteadyStateStatus) int {
	for _, s := range st.Checks {
		fmt.Fprintf(e.stdout, "  %s (%s): first %s, worst %s, last %s, %d failed, %d unknown\n", s.Name, s.Bound,
			readingValue(s.First), readingValue(s.Worst), readingValue(s.Last), s.Failures, s.Unknown)
	}
	reason := ""
	if st.Reason != "" {
		reason = ": " + st.Reason
	}
	fmt.Fprintf(e.stdout, "verdict %s: %s%s\n", name, st.Verdict, reason)
	if st.Verdict == policies.VerdictHeld {
		return exitOK
	}
	return exitFailed
}

func readingValue(r *policies.Reading) string {
	if r == nil {
		return "-"
	}
	return r.String()
}

func printReadings(e *env, what string, rs []policies.Reading) {
	for _, r := range rs {
		mark := "ok"
		switch {
		case r.Value == nil:
			mark = "unknown"
		case !r.OK:
			mark = "FAILED"
		}
		fmt.Fprintf(e.stdout, "%s: %s = %s %s\n", what, r.Check, r.String(), mark)
	}
}
