package policies

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestValidateSteadyState(t *testing.T) {
	base := "{target: {service: payments}, abort: {percent: 10, grpcStatus: 14}, duration: 1m, steadyState: "
	for _, tc := range []struct {
		name, steady string
		want         Violations
	}{
		{name: "valid with defaults", steady: `{checks: [{name: errors, query: "sum(rate(x[1m]))", below: 0.01}]}`},
		{name: "valid with every field", steady: `{interval: 1s, failAfter: 3, onUnknown: continue, checks: [{name: errors, query: "up", below: 0.01}, {name: rps, query: "vector(1)", above: 0}]}`},
		{name: "every rule broken", steady: `{interval: 500ms, failAfter: 0, onUnknown: pause, checks: [{name: Errors, query: "", below: 1, above: 2}, {name: x, query: up}, {name: x, query: up, below: 1}]}`, want: Violations{
			{Field: "spec.steadyState.interval", Message: "must be at least 1s (got 500ms)"},
			{Field: "spec.steadyState.failAfter", Message: "must be between 1 and 100 (got 0)"},
			{Field: "spec.steadyState.onUnknown", Message: `must be abort or continue (got "pause")`},
			{Field: "spec.steadyState.checks[0].name", Message: lbl("Errors")},
			{Field: "spec.steadyState.checks[0].query", Message: "required: a PromQL expression returning one number"},
			{Field: "spec.steadyState.checks[0]", Message: "set exactly one of below or above, not both"},
			{Field: "spec.steadyState.checks[1]", Message: "set exactly one of below or above: the bound the value must stay within"},
			{Field: "spec.steadyState.checks[2].name", Message: `"x" is used twice (first at spec.steadyState.checks[1])`},
		}},
		{name: "no checks, interval past the duration", steady: `{interval: 2m}`, want: Violations{
			{Field: "spec.steadyState.interval", Message: "must be at most spec.duration (1m): the experiment would end before its first evaluation (got 2m)"},
			{Field: "spec.steadyState.checks", Message: "required: at least one check (a query and a bound)"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := decodeOne(t, doc("ChaosExperiment", "e", base+tc.steady+"}"))
			require.Equal(t, tc.want, Validate(r, ValidateOptions{}))
		})
	}
}

func TestSteadyStateDefaultsAndBounds(t *testing.T) {
	s := &SteadyState{}
	require.Equal(t, DefaultSteadyInterval, s.SteadyInterval())
	require.Equal(t, DefaultSteadyFailAfter, s.SteadyFailAfter())
	require.Equal(t, OnUnknownAbort, s.SteadyOnUnknown())
	s = &SteadyState{Interval: Dur(time.Second), FailAfter: Ptr(5), OnUnknown: OnUnknownContinue}
	require.Equal(t, time.Second, s.SteadyInterval())
	require.Equal(t, 5, s.SteadyFailAfter())
	require.Equal(t, OnUnknownContinue, s.SteadyOnUnknown())

	below := SteadyCheck{Below: Ptr(0.01)}
	require.True(t, below.Holds(0.005))
	require.False(t, below.Holds(0.01))
	require.Equal(t, "below 0.01", below.Bound())
	above := SteadyCheck{Above: Ptr(10.0)}
	require.True(t, above.Holds(11))
	require.False(t, above.Holds(10))
	require.Equal(t, "above 10", above.Bound())
}
