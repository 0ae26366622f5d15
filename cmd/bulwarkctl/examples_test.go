package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
)

// examplesDir is the example mesh that `make run` serves.
const examplesDir = "../../examples/policies"

// TestExamplesValidate decodes and validates every example file strictly.
func TestExamplesValidate(t *testing.T) {
	b, probs, err := check(examplesDir, nil, policies.ValidateOptions{})
	require.NoError(t, err)
	for _, p := range probs {
		t.Error(p.String())
	}
	set := b.set()
	require.ElementsMatch(t, []string{"checkout", "frontend", "inventory", "payments", "payments-static"}, set.ServiceNames())
	require.Len(t, set.Policies, 5)
	require.Len(t, set.Experiments, 1)
}

// TestExamplesCoverEveryPattern keeps the example mesh honest: it must show
// every kind of target and every policy section.
func TestExamplesCoverEveryPattern(t *testing.T) {
	b, probs, err := check(examplesDir, nil, policies.ValidateOptions{})
	require.NoError(t, err)
	require.Empty(t, probs)
	set := b.set()

	var star, selector, service, route, sourced bool
	for _, p := range set.Policies {
		tg := p.Spec.Target
		switch {
		case tg.Route != nil:
			route = true
		case tg.Service == "*":
			star = true
		case len(tg.Selector) > 0:
			selector = true
		case tg.Service != "":
			service = true
		}
		if len(p.Spec.Sources) > 0 {
			sourced = true
		}
	}
	require.True(t, star && selector && service && route && sourced, "mesh default, selector, service, route and source-scoped policies")

	pay := set.Policies["payments"]
	require.NotNil(t, pay)
	sp := pay.Spec
	require.True(t, sp.Timeouts != nil && sp.Timeouts.Connect != nil && sp.Timeouts.Request != nil && sp.Timeouts.Idle != nil)
	require.True(t, sp.Retries != nil && sp.Retries.Backoff != nil && sp.Retries.Budget != nil && len(sp.Retries.Methods) > 0)
	cb := sp.CircuitBreaker
	require.True(t, cb != nil && cb.Consecutive5xx != nil && cb.ConsecutiveGatewayErrors != nil && cb.FailurePercentage != nil && cb.SuccessRate != nil, "every detector")
	require.NotNil(t, sp.Bulkhead)
	require.NotNil(t, sp.HealthCheck)
	require.Equal(t, &policies.Fallback{Service: "payments-static"}, sp.Fallback)

	require.Equal(t, "critical", set.Services["payments"].Metadata.Labels["tier"])
	require.Equal(t, policies.ProtocolGRPC, set.Services["inventory"].Spec.Protocol)
	ports := map[int]bool{}
	for _, s := range set.Services {
		for _, ep := range s.Spec.Endpoints {
			require.Equal(t, "127.0.0.1", ep.Address)
			require.NotEmpty(t, ep.Zone)
			require.False(t, ports[ep.Port], "port %d used twice", ep.Port)
			ports[ep.Port] = true
		}
	}

	exp := set.Experiments["payments-503"]
	require.NotNil(t, exp)
	require.Equal(t, "payments", exp.Spec.Target.Service)
	require.Equal(t, map[string]string{"x-chaos": "on"}, exp.Spec.Headers)
	require.Equal(t, &policies.Abort{Percent: 10, HTTPStatus: 503}, exp.Spec.Abort)
	require.NotEmpty(t, exp.Spec.Hypothesis)
}

func TestExamplesValidateFromTheCommandLine(t *testing.T) {
	r := bulwarkctl(t, "", "validate", "-f", examplesDir)
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Equal(t, "valid: 5 services, 5 policies, 1 experiment in 6 files\n", r.stdout)
}

// expectedExampleWarnings are the lint warnings the example mesh carries on
// purpose, each explained in a comment of its file: fields that proxyless
// gRPC clients ignore, set for the Envoy sidecars of services that call
// inventory (a gRPC service).
var expectedExampleWarnings = map[string]bool{
	"mesh-default spec.timeouts.connect":               true,
	"mesh-default spec.retries.perTryTimeout":          true,
	"mesh-default spec.retries.on":                     true,
	"mesh-default spec.retries.methods":                true,
	"mesh-default spec.retries.budget":                 true,
	"checkout-to-inventory spec.retries.methods":       true,
	"checkout-to-inventory spec.retries.perTryTimeout": true,
}

// TestExamplesLint lints the example mesh: no errors, and no warning but the
// expected ones.
func TestExamplesLint(t *testing.T) {
	b, probs, err := check(examplesDir, nil, policies.ValidateOptions{})
	require.NoError(t, err)
	require.Empty(t, probs)
	seen := map[string]bool{}
	for _, f := range policies.Lint(b.set()) {
		switch f.Severity {
		case policies.SeverityError:
			t.Errorf("error finding: %s", f)
		case policies.SeverityWarning:
			key := f.Name + " " + f.Field
			if !expectedExampleWarnings[key] {
				t.Errorf("unexpected warning: %s", f)
			}
			require.Contains(t, f.Message, "ignored by proxyless gRPC clients", f.String())
			seen[key] = true
		}
	}
	for key := range expectedExampleWarnings {
		require.True(t, seen[key], "expected warning %q is gone: update the example's comment and this list", key)
	}
}
