package policies

import (
	"fmt"
	"math"
	"time"
)

// SteadyState is a ChaosExperiment's hypothesis as Prometheus queries, each
// with a bound. It is checked before the experiment starts, every interval
// while it runs (failAfter consecutive failures stop it, as the kill switch
// does) and summed up in a verdict at the end.
type SteadyState struct {
	// Interval is the evaluation period (default 10s, at least 1s).
	Interval *Duration `json:"interval,omitempty" yaml:"interval,omitempty"`
	// FailAfter is how many consecutive failed evaluations stop the
	// experiment (default 2).
	FailAfter *int `json:"failAfter,omitempty" yaml:"failAfter,omitempty"`
	// OnUnknown says what a check that cannot be read (Prometheus down, a
	// query error, no data) does: abort (the default, counted as a failure)
	// or continue (the evaluation is skipped).
	OnUnknown string `json:"onUnknown,omitempty" yaml:"onUnknown,omitempty"`
	// Checks are the measured conditions, all of which must hold.
	Checks []SteadyCheck `json:"checks" yaml:"checks"`
}

// SteadyCheck is one PromQL query whose value must stay below or above a
// bound.
type SteadyCheck struct {
	Name  string   `json:"name" yaml:"name"`
	Query string   `json:"query" yaml:"query"`
	Below *float64 `json:"below,omitempty" yaml:"below,omitempty"`
	Above *float64 `json:"above,omitempty" yaml:"above,omitempty"`
}

// Holds reports whether value meets the check's bound (strictly).
func (c SteadyCheck) Holds(value float64) bool {
	if math.IsNaN(value) {
		return false
	}
	if c.Below != nil {
		return value < *c.Below
	}
	return c.Above != nil && value > *c.Above
}

// Bound renders the check's bound, such as "below 0.01".
func (c SteadyCheck) Bound() string {
	if c.Below != nil {
		return "below " + fmtNum(*c.Below)
	}
	if c.Above != nil {
		return "above " + fmtNum(*c.Above)
	}
	return "no bound"
}

// Steady-state defaults and limits.
const (
	DefaultSteadyInterval  = 10 * time.Second
	MinSteadyInterval      = time.Second
	DefaultSteadyFailAfter = 2
	MaxSteadyFailAfter     = 100
	MaxSteadyChecks        = 20
	MaxSteadyQueryLen      = 4096
	OnUnknownAbort         = "abort"
	OnUnknownContinue      = "continue"
)

// SteadyInterval returns the evaluation period with its default.
func (s *SteadyState) SteadyInterval() time.Duration {
	if s.Interval == nil || s.Interval.D() <= 0 {
		return DefaultSteadyInterval
	}
	return s.Interval.D()
}

// SteadyFailAfter returns failAfter with its default.
func (s *SteadyState) SteadyFailAfter() int {
	if s.FailAfter == nil {
		return DefaultSteadyFailAfter
	}
	return *s.FailAfter
}

// SteadyOnUnknown returns onUnknown with its default.
func (s *SteadyState) SteadyOnUnknown() string {
	if s.OnUnknown == "" {
		return OnUnknownAbort
	}
	return s.OnUnknown
}

// Experiment phases and verdicts recorded by the steady-state runner.
const (
	PhaseRunning = "running"
	PhaseAborted = "aborted"
	PhaseEnded   = "ended"

	VerdictHeld    = "held"
	VerdictFailed  = "failed"
	VerdictAborted = "aborted"
)

// SteadyStateStatus is what the runner records about an experiment with
// spec.steadyState: its phase, why it was stopped, the verdict and the
// readings per check. It is kept with the experiment's history record.
type SteadyStateStatus struct {
	// Phase is running, aborted (stopped by its hypothesis or its
	// onUnknown rule) or ended.
	Phase string `json:"phase,omitempty" yaml:"phase,omitempty"`
	// Reason says why the experiment was stopped or could not be evaluated.
	Reason string `json:"reason,omitempty" yaml:"reason,omitempty"`
	// Verdict is held, failed or aborted, once the experiment ended.
	Verdict string `json:"verdict,omitempty" yaml:"verdict,omitempty"`
	// Forced is true when it started with ?force=true although the
	// pre-start evaluation failed.
	Forced bool `json:"forced,omitempty" yaml:"forced,omitempty"`
	// Evaluations counts the evaluations during the run (the pre-start one
	// aside).
	Evaluations int `json:"evaluations,omitempty" yaml:"evaluations,omitempty"`
	// PreStart is the evaluation before the start.
	PreStart []Reading `json:"preStart,omitempty" yaml:"preStart,omitempty"`
	// Checks sums up each check's readings during the run.
	Checks []CheckSummary `json:"checks,omitempty" yaml:"checks,omitempty"`
}

// Reading is one evaluation of one check.
type Reading struct {
	Check string `json:"check" yaml:"check"`
	Time  string `json:"time" yaml:"time"`
	// Value is the query's value; nil when it could not be read.
	Value *float64 `json:"value,omitempty" yaml:"value,omitempty"`
	// OK says whether the value met the bound.
	OK bool `json:"ok" yaml:"ok"`
	// Error says why the value could not be read.
	Error string `json:"error,omitempty" yaml:"error,omitempty"`
}

// String renders a reading's value for messages: "0.42", or "unknown"
// with the error.
func (r Reading) String() string {
	if r.Value == nil {
		return "unknown (" + r.Error + ")"
	}
	return fmtNum(*r.Value)
}

// CheckSummary is a check's first, worst and last reading during a run, and
// how many of its evaluations failed.
type CheckSummary struct {
	Name     string   `json:"name" yaml:"name"`
	Bound    string   `json:"bound" yaml:"bound"`
	First    *Reading `json:"first,omitempty" yaml:"first,omitempty"`
	Worst    *Reading `json:"worst,omitempty" yaml:"worst,omitempty"`
	Last     *Reading `json:"last,omitempty" yaml:"last,omitempty"`
	Failures int      `json:"failures" yaml:"failures"`
	Unknown  int      `json:"unknown" yaml:"unknown"`
}

// steadyState checks spec.steadyState.
func (v *validator) steadyState(s *SteadyState, duration *Duration) {
	const p = "spec.steadyState"
	if s.Interval != nil {
		switch {
		case s.Interval.IsOff():
			v.add(p+".interval", "cannot be off: the evaluation period, at least %s", Duration(MinSteadyInterval))
		case s.Interval.D() < MinSteadyInterval:
			v.add(p+".interval", "must be at least %s (got %s)", Duration(MinSteadyInterval), *s.Interval)
		case duration != nil && duration.D() > 0 && s.Interval.D() > duration.D():
			v.add(p+".interval", "must be at most spec.duration (%s): the experiment would end before its first evaluation (got %s)", *duration, *s.Interval)
		}
	}
	if f := s.FailAfter; f != nil && (*f < 1 || *f > MaxSteadyFailAfter) {
		v.add(p+".failAfter", "must be between 1 and %d (got %d)", MaxSteadyFailAfter, *f)
	}
	switch s.OnUnknown {
	case "", OnUnknownAbort, OnUnknownContinue:
	default:
		v.add(p+".onUnknown", "must be abort or continue (got %q)", s.OnUnknown)
	}
	switch {
	case len(s.Checks) == 0:
		v.add(p+".checks", "required: at least one check (a query and a bound)")
	case len(s.Checks) > MaxSteadyChecks:
		v.add(p+".checks", "at most %d checks (got %d)", MaxSteadyChecks, len(s.Checks))
	}
	seen := map[string]int{}
	for i, c := range s.Checks {
		cp := fmt.Sprintf("%s.checks[%d]", p, i)
		v.name(cp+".name", c.Name)
		if j, dup := seen[c.Name]; dup && c.Name != "" {
			v.add(cp+".name", "%q is used twice (first at %s.checks[%d])", c.Name, p, j)
		} else {
			seen[c.Name] = i
		}
		switch {
		case c.Query == "":
			v.add(cp+".query", "required: a PromQL expression returning one number")
		case len(c.Query) > MaxSteadyQueryLen:
			v.add(cp+".query", "must be at most %d characters (got %d)", MaxSteadyQueryLen, len(c.Query))
		}
		switch {
		case c.Below != nil && c.Above != nil:
			v.add(cp, "set exactly one of below or above, not both")
		case c.Below == nil && c.Above == nil:
			v.add(cp, "set exactly one of below or above: the bound the value must stay within")
		}
		for _, b := range []struct {
			f string
			x *float64
		}{{"below", c.Below}, {"above", c.Above}} {
			if b.x != nil && (math.IsNaN(*b.x) || math.IsInf(*b.x, 0)) {
				v.add(cp+"."+b.f, "must be a finite number")
			}
		}
	}
}
