package policies

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLintTimeoutOff: a request timeout switched off is a choice, not an
// omission; the rules that add up deadlines leave it alone, and an
// experiment on calls without a deadline is still flagged.
func TestLintTimeoutOff(t *testing.T) {
	const off = "timeouts.request is off for %s: they have no deadline, by this policy's choice (a long-lived stream?); make sure the callers bound them with a deadline of their own"
	runLint(t, []lcase{
		{name: "a mesh default cancelled for one route: info, no missing-timeout warning", set: svcDoc("events", "{port: 80}") +
			pol("mesh", `{target: {service: "*"}, timeouts: {request: 3s}}`) +
			pol("events-stream", `{target: {service: events, route: {pathPrefix: /stream}}, timeouts: {request: off}}`),
			want: []Finding{infoP("events-stream", "spec.timeouts.request", sprintf(off, "calls to events on /stream"))}},
		{name: "off for the whole service counts as a timeout decided", set: svcDoc("events", "{port: 80}") +
			pol("events", `{target: {service: events}, timeouts: {request: off}}`),
			want: []Finding{infoP("events", "spec.timeouts.request", sprintf(off, "calls to events"))}},
		{name: "retries under no deadline, or with no per-try bound, can all run", set: svcDoc("events", "{port: 80}") +
			pol("mesh", `{target: {service: "*"}, timeouts: {request: 1s}, retries: {attempts: 1, perTryTimeout: 2s}}`) +
			pol("events", `{target: {service: events}, timeouts: {request: off}}`) +
			pol("events-a", `{target: {service: events, route: {pathPrefix: /a}}, retries: {perTryTimeout: off}}`),
			want: []Finding{
				infoP("events", "spec.timeouts.request", sprintf(off, "calls to events on /a")),
				infoP("events", "spec.timeouts.request", sprintf(off, "calls to events")),
				infoP("events-a", "spec.retries.perTryTimeout", infoPerTry),
				infoP("mesh", "spec.retries.perTryTimeout", infoPerTry),
			}},
		{name: "an experiment on calls whose timeout is off", set: svcDoc("events", "{port: 80}") + svcDoc("events-static", "{port: 80}") +
			pol("events", `{target: {service: events}, timeouts: {request: off}, fallback: {service: events-static}}`) +
			pol("mesh", `{target: {service: "*"}, timeouts: {request: 3s}}`) +
			exp("e", `{target: {service: events}, delay: {percent: 5, fixed: 2s}, duration: 10m}`),
			want: []Finding{
				warnE("e", "spec.target", "calls to events have no request timeout, so an injected delay or a hung host holds callers without bound; give events a timeouts.request before running the experiment"),
				infoP("events", "spec.timeouts.request", sprintf(off, "calls to events")),
			}},
	})
}

func TestValidateTimeoutOff(t *testing.T) {
	const cannot = "cannot be off: only timeouts.request, timeouts.idle and retries.perTryTimeout can be switched off"
	runValidate(t, []vcase{
		{name: "off where a timeout may be switched off", doc: doc("ResiliencePolicy", "p",
			`{target: {service: payments}, timeouts: {request: off, idle: off}, retries: {perTryTimeout: off}}`)},
		{name: "off where it may not", doc: doc("ResiliencePolicy", "p", `{target: {service: payments},
  timeouts: {connect: off}, retries: {backoff: {base: off}}, circuitBreaker: {interval: off}, healthCheck: {tcp: {}, timeout: off}}`),
			want: Violations{
				{Field: "spec.timeouts.connect", Message: cannot},
				{Field: "spec.retries.backoff.base", Message: cannot},
				{Field: "spec.circuitBreaker.interval", Message: cannot},
				{Field: "spec.healthCheck.timeout", Message: cannot},
			}},
		{name: "an experiment that never ends", doc: doc("ChaosExperiment", "e",
			`{target: {service: payments}, delay: {percent: 5, fixed: off}, duration: off}`),
			want: Violations{
				{Field: "spec.delay.fixed", Message: cannot},
				{Field: "spec.duration", Message: "cannot be off: an experiment must end by itself, within 1h"},
			}},
	})
}

// TestMergeTimeoutOff: off is a set leaf; it wins by precedence like any
// value, and loses to a more specific policy like any value.
func TestMergeTimeoutOff(t *testing.T) {
	s := decodeSet(t, svcDoc("events", "{port: 80}")+
		pol("mesh", `{target: {service: "*"}, timeouts: {request: 3s, idle: 1m}}`)+
		pol("events", `{target: {service: events}, timeouts: {request: off}}`)+
		pol("events-poll", `{target: {service: events, route: {pathPrefix: /poll}}, timeouts: {request: 2s}}`))
	eff := s.Resolve("", "events", "")
	require.True(t, eff.Spec.Timeouts.Request.IsOff())
	require.Equal(t, "events", eff.From["timeouts.request"])
	require.Equal(t, Duration(time.Minute), *eff.Spec.Timeouts.Idle, "the leaves off does not name are still inherited")
	eff = s.Resolve("", "events", "/poll")
	require.Equal(t, Duration(2*time.Second), *eff.Spec.Timeouts.Request)
	require.Equal(t, "events-poll", eff.From["timeouts.request"])
}

func TestDurationOffText(t *testing.T) {
	d, err := ParseDuration("off")
	require.NoError(t, err)
	require.True(t, d.IsOff())
	require.Equal(t, "off", d.String())
	b, err := Off.MarshalJSON()
	require.NoError(t, err)
	require.Equal(t, `"off"`, string(b))
	var back Duration
	require.NoError(t, back.UnmarshalJSON(b))
	require.Equal(t, Off, back)
	_, err = ParseDuration("-2562047h47m16.854775808s") // the bits of Off, written as a span
	require.Error(t, err)
}
