// Package experiments runs the steady-state hypothesis of chaos experiments
// against Prometheus: the evaluation before the start (the admin API refuses
// an experiment that is not steady), the evaluation every interval while it
// runs (failAfter consecutive failures stop it as the kill switch does), and
// the verdict at its end, recorded with the readings next to the history.
//
// It runs off the write path: a Prometheus that is down or slow costs
// evaluations, never a write or a push. It must not import the admin API,
// the builder, the xDS server, gitops or the root.
package experiments

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/prom"
	"github.com/bulwarkmesh/bulwark/policies"
)

// Querier runs an instant query; *prom.Client is one.
type Querier interface {
	Query(ctx context.Context, query string, at time.Time) ([]prom.Sample, error)
}

// Evaluate reads every check once, concurrently, within timeout.
func Evaluate(ctx context.Context, q Querier, ss *policies.SteadyState, timeout time.Duration) []policies.Reading {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := make([]policies.Reading, len(ss.Checks))
	done := make(chan struct{}, len(ss.Checks))
	for i, c := range ss.Checks {
		go func() {
			out[i] = read(ctx, q, c)
			done <- struct{}{}
		}()
	}
	for range ss.Checks {
		<-done
	}
	return out
}

// read evaluates one check: the worst series counts (the largest for
// below, the smallest for above); no series, or NaN, is unknown.
func read(ctx context.Context, q Querier, c policies.SteadyCheck) policies.Reading {
	r := policies.Reading{Check: c.Name, Time: time.Now().UTC().Format(time.RFC3339Nano)}
	samples, err := q.Query(ctx, c.Query, time.Time{})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = errors.New("prometheus did not answer in time")
		}
		r.Error = err.Error()
		return r
	}
	var (
		worst float64
		found bool
	)
	for _, s := range samples {
		if math.IsNaN(s.Value) {
			continue
		}
		if !found || (c.Below != nil && s.Value > worst) || (c.Below == nil && s.Value < worst) {
			worst, found = s.Value, true
		}
	}
	switch {
	case len(samples) == 0:
		r.Error = "no data: the query returned no series"
	case !found:
		r.Error = "no data: the query returned NaN (no traffic in its window?)"
	default:
		r.Value = &worst
		r.OK = c.Holds(worst)
	}
	return r
}

// outcome sums up one evaluation: failed names the first check that read a
// value out of bounds, unknown the first that could not be read.
func outcome(rs []policies.Reading) (failed, unknown *policies.Reading) {
	for i := range rs {
		switch {
		case rs[i].Value == nil && unknown == nil:
			unknown = &rs[i]
		case rs[i].Value != nil && !rs[i].OK && failed == nil:
			failed = &rs[i]
		}
	}
	return failed, unknown
}

// Steady reports whether a pre-start evaluation lets the experiment start:
// every check read a value within its bound, or could not be read while
// onUnknown is continue.
func Steady(ss *policies.SteadyState, rs []policies.Reading) bool {
	failed, unknown := outcome(rs)
	return failed == nil && (unknown == nil || ss.SteadyOnUnknown() == policies.OnUnknownContinue)
}

// summarise folds one evaluation into the per-check summaries.
func summarise(ss *policies.SteadyState, sums []policies.CheckSummary, rs []policies.Reading) []policies.CheckSummary {
	if len(sums) != len(ss.Checks) {
		sums = make([]policies.CheckSummary, len(ss.Checks))
		for i, c := range ss.Checks {
			sums[i] = policies.CheckSummary{Name: c.Name, Bound: c.Bound()}
		}
	}
	for i, r := range rs {
		s := &sums[i]
		r := r
		if s.First == nil {
			s.First = &r
		}
		s.Last = &r
		if r.Value == nil {
			s.Unknown++
			continue
		}
		if !r.OK {
			s.Failures++
		}
		if s.Worst == nil || s.Worst.Value == nil || worse(ss.Checks[i], *r.Value, *s.Worst.Value) {
			s.Worst = &r
		}
	}
	return sums
}

// worse reports whether a is further from holding than b.
func worse(c policies.SteadyCheck, a, b float64) bool {
	if c.Below != nil {
		return a > b
	}
	return a < b
}
