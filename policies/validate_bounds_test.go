package policies

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Durations below a millisecond, or with a fraction of one, are refused
// with the reason: Envoy counts them in whole milliseconds and would make
// 500us a 0, which for a route timeout means none at all.
func TestValidateSubMillisecondDurations(t *testing.T) {
	const tooSmall = "must be at least 1ms (got %s): proxies count these durations in whole milliseconds, and Envoy would truncate it to 0, which for a timeout means none at all"
	runValidate(t, []vcase{
		{name: "whole milliseconds", doc: doc("ResiliencePolicy", "p", `{target: {service: payments}, timeouts: {connect: 1ms, request: 1500ms}, retries: {perTryTimeout: 2.5s}}`)},
		{name: "below a millisecond", doc: doc("ResiliencePolicy", "p", `
  target: {service: payments}
  timeouts: {connect: 1ns, request: 500us}
  retries: {perTryTimeout: 999µs}`), want: Violations{
			{Field: "spec.timeouts.connect", Message: fmt.Sprintf(tooSmall, "1ns")},
			{Field: "spec.timeouts.request", Message: fmt.Sprintf(tooSmall, "500µs")},
			{Field: "spec.retries.perTryTimeout", Message: fmt.Sprintf(tooSmall, "999µs")},
		}},
		{name: "a fraction of a millisecond", doc: doc("ResiliencePolicy", "p", `{target: {service: payments}, timeouts: {request: 1500us}}`), want: Violations{
			{Field: "spec.timeouts.request", Message: "must be a whole number of milliseconds (got 1.5ms): Envoy truncates durations to milliseconds; write 1ms or 2ms"},
		}},
		{name: "experiment delay", doc: doc("ChaosExperiment", "e", `{target: {service: payments}, delay: {percent: 5, fixed: 100us}, duration: 10m}`), want: Violations{
			{Field: "spec.delay.fixed", Message: fmt.Sprintf(tooSmall, "100µs")},
		}},
	})
}

// metadata.source is bounded: printable, no control characters, at most
// MaxSourceLength bytes.
func TestValidateSource(t *testing.T) {
	svc := func(src string) *Service {
		return &Service{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindService}, Metadata: Metadata{Name: "a", Source: src}, Spec: ServiceSpec{Port: 80}}
	}
	require.Empty(t, Validate(svc("dir:/srv/policies"), ValidateOptions{}))
	require.Empty(t, Validate(svc("team payments (ci)"), ValidateOptions{}))
	for src, want := range map[string]string{
		"ci\nmore":                  `must hold printable characters only, no newline, tab or other control character (got "ci\nmore")`,
		"a\tb":                      `must hold printable characters only, no newline, tab or other control character (got "a\tb")`,
		" ci":                       `must not start or end with spaces (got " ci")`,
		strings.Repeat("x", 10_000): "must be at most 512 bytes (got 10000)",
		"bad\xff":                   "must be valid UTF-8",
	} {
		require.Equal(t, Violations{{Field: "metadata.source", Message: want}}, Validate(svc(src), ValidateOptions{}), "%q", src)
	}
}

// Validation reports at most MaxViolations problems, and one more saying
// there were more.
func TestValidateBounded(t *testing.T) {
	svc := &Service{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindService}, Metadata: Metadata{Name: "a"}, Spec: ServiceSpec{Port: 80}}
	for range 5000 {
		svc.Spec.Endpoints = append(svc.Spec.Endpoints, Endpoint{Address: "not an address", Port: 0})
	}
	vs := Validate(svc, ValidateOptions{})
	require.Len(t, vs, MaxViolations+1)
	require.Equal(t, "more than 1000 problems; fix these first", vs[MaxViolations].Message)

	// Decoding a bundle shares one budget across its documents.
	var b strings.Builder
	for i := range 500 {
		fmt.Fprintf(&b, "---\napiVersion: bulwark/v1\nkind: Service\nmetadata: {name: s%d}\nspec: {port: 80, a: 1, b: 2, c: 3, d: 4}\n", i)
	}
	_, err := DecodeAll([]byte(b.String()))
	var des DecodeErrors
	require.ErrorAs(t, err, &des)
	n := 0
	for _, de := range des {
		n += len(de.Violations)
	}
	require.Equal(t, MaxViolations+1, n)
}
