package recommend

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
)

func f(v float64) *float64 { return &v }

func set(t *testing.T, docs string) *policies.Set {
	t.Helper()
	rs, err := policies.DecodeAll([]byte(docs))
	require.NoError(t, err)
	for _, r := range rs {
		if s, ok := r.(*policies.Service); ok {
			policies.DefaultService(s)
		}
	}
	return policies.NewSet(rs...)
}

const mesh = `apiVersion: bulwark/v1
kind: Service
metadata: {name: payments}
spec: {protocol: http, port: 80, endpoints: [{address: 10.0.0.1, port: 80}]}
---
apiVersion: bulwark/v1
kind: Service
metadata: {name: checkout}
spec: {protocol: http, port: 80}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: 100ms}
  retries: {attempts: 2, perTryTimeout: 50ms, on: [5xx], methods: [GET], backoff: {base: 25ms, max: 100ms}, budget: {percent: 20}}
`

// The rule: request = max(1.5 × p99.9, 2 × p99, (attempts+1) × perTry +
// backoff), perTry = max(2 × attempt p99, attempt p99.9), each rounded up
// to 10ms; the policy it gives validates, lints clean, and the timeout
// below the p99 is a finding.
func TestRuleAndPolicy(t *testing.T) {
	s := set(t, mesh)
	eff := s.Resolve("checkout", "payments", "")
	policies.DefaultEffective(&eff.Spec)
	rec := api.Recommendation{Caller: "checkout", Service: "payments", Flavor: "envoy", Requests: 5000,
		P50Ms: f(20), P99Ms: f(120), P999Ms: f(180), AttemptP99Ms: f(110), ConfiguredRequest: "100ms", ConfiguredPerTry: "50ms"}
	recommend(&rec, eff.Spec, "envoy", f(170))
	// perTry = max(220, 170) = 220ms; request = max(270, 240, 3×220 + 25+50) = 735 → 740ms.
	require.Equal(t, "220ms", rec.RecommendedPerTry)
	require.Equal(t, "740ms", rec.RecommendedRequest)

	grpc := api.Recommendation{P99Ms: f(120), P999Ms: f(181)}
	recommend(&grpc, eff.Spec, "grpc", nil)
	require.Equal(t, "280ms", grpc.RecommendedRequest, "1.5 × 181 = 271.5, rounded up")
	require.Empty(t, grpc.RecommendedPerTry)

	ps, findings := policiesFor(s, []api.Recommendation{rec}, "1h")
	require.Len(t, ps, 1)
	p := ps[0]
	require.Equal(t, "payments", p.Metadata.Name)
	require.Equal(t, "740ms", p.Spec.Timeouts.Request.String())
	require.Equal(t, "220ms", p.Spec.Retries.PerTryTimeout.String())
	require.Equal(t, 2, *p.Spec.Retries.Attempts, "the rest of the policy is kept")
	require.Empty(t, policies.Validate(p, policies.ValidateOptions{}))
	next := s.Clone()
	next.Add(p)
	for _, fd := range policies.Lint(next) {
		require.False(t, fd.Name == "payments" && fd.Severity != policies.SeverityInfo, "the recommended policy lints clean: %s", fd)
	}
	require.Len(t, findings, 1)
	require.Equal(t, "spec.timeouts.request", findings[0].Field)
	require.Contains(t, findings[0].Message, "below the p99 latency observed for calls from checkout to payments (120.0ms over 1h)")

	// Too little data, or far above: no policy, or a finding.
	far := api.Recommendation{Caller: "checkout", Service: "payments", Requests: 10, P99Ms: f(5), P999Ms: f(8), ConfiguredRequest: "100ms", Reason: "too little data"}
	ps, findings = policiesFor(s, []api.Recommendation{far}, "1h")
	require.Empty(t, ps)
	require.Len(t, findings, 1)
	require.Contains(t, findings[0].Message, "more than 10× the p99.9")

	require.Equal(t, 10*time.Millisecond, roundUp10(0.2))
	require.Equal(t, 75*time.Millisecond, backoffWaits(2, 25*time.Millisecond, 100*time.Millisecond))
}
