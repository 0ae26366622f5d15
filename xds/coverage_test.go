package xds

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// Field coverage, translation side: every leaf of PolicySpec
// (policies.PolicyLeaves) changes what each flavor receives, or is listed as
// ignored by the flavor and lint says so; it has its row in
// docs/policies.md and its property in the OpenAPI schema of
// ResiliencePolicy. policies/fields_coverage_test.go checks validation and
// merge. Adding a field to PolicySpec makes these tests fail until each is
// done.

// translationCase sets one leaf: with is a policy spec that sets it, ctx the
// same spec without it (what else the leaf needs to take effect).
type translationCase struct {
	ctx, with string
	// grpcIgnored: proxyless gRPC clients ignore the leaf (lint warns).
	grpcIgnored bool
}

const (
	retriesCtx = `retries: {on: [unavailable]}`
	fpCtx      = `circuitBreaker: {failurePercentage: {}}`
	srCtx      = `circuitBreaker: {successRate: {}}`
	tcpCtx     = `healthCheck: {tcp: {}}`
	httpCtx    = `healthCheck: {http: {path: /hc}}`
)

var translationCases = map[string]translationCase{
	"timeouts.connect":                               {"", `timeouts: {connect: 2s}`, true},
	"timeouts.request":                               {"", `timeouts: {request: 2s}`, false},
	"timeouts.idle":                                  {"", `timeouts: {idle: 2m}`, true},
	"retries.attempts":                               {retriesCtx, `retries: {on: [unavailable], attempts: 4}`, false},
	"retries.perTryTimeout":                          {retriesCtx, `retries: {on: [unavailable], perTryTimeout: 1s}`, true},
	"retries.on":                                     {`retries: {attempts: 1}`, `retries: {attempts: 1, on: [unavailable, cancelled]}`, false},
	"retries.statusCodes":                            {retriesCtx, `retries: {on: [unavailable], statusCodes: [503]}`, true},
	"retries.methods":                                {retriesCtx, `retries: {on: [unavailable], methods: [GET]}`, true},
	"retries.backoff.base":                           {retriesCtx, `retries: {on: [unavailable], backoff: {base: 10ms}}`, false},
	"retries.backoff.max":                            {retriesCtx, `retries: {on: [unavailable], backoff: {max: 1s}}`, false},
	"retries.budget.percent":                         {`retries: {budget: {minConcurrency: 3}}`, `retries: {budget: {minConcurrency: 3, percent: 30}}`, true},
	"retries.budget.minConcurrency":                  {`retries: {budget: {percent: 20}}`, `retries: {budget: {percent: 20, minConcurrency: 5}}`, true},
	"circuitBreaker.consecutive5xx":                  {"", `circuitBreaker: {consecutive5xx: 3}`, true},
	"circuitBreaker.consecutiveGatewayErrors":        {"", `circuitBreaker: {consecutiveGatewayErrors: 3}`, true},
	"circuitBreaker.failurePercentage.threshold":     {fpCtx, `circuitBreaker: {failurePercentage: {threshold: 50}}`, false},
	"circuitBreaker.failurePercentage.minimumHosts":  {fpCtx, `circuitBreaker: {failurePercentage: {minimumHosts: 2}}`, false},
	"circuitBreaker.failurePercentage.requestVolume": {fpCtx, `circuitBreaker: {failurePercentage: {requestVolume: 10}}`, false},
	"circuitBreaker.successRate.stdevFactor":         {srCtx, `circuitBreaker: {successRate: {stdevFactor: 2.5}}`, false},
	"circuitBreaker.successRate.minimumHosts":        {srCtx, `circuitBreaker: {successRate: {minimumHosts: 2}}`, false},
	"circuitBreaker.successRate.requestVolume":       {srCtx, `circuitBreaker: {successRate: {requestVolume: 10}}`, false},
	"circuitBreaker.interval":                        {`circuitBreaker: {}`, `circuitBreaker: {interval: 20s}`, false},
	"circuitBreaker.baseEjectionTime":                {`circuitBreaker: {}`, `circuitBreaker: {baseEjectionTime: 1m}`, false},
	"circuitBreaker.maxEjectionPercent":              {`circuitBreaker: {}`, `circuitBreaker: {maxEjectionPercent: 50}`, false},
	"bulkhead.maxConnections":                        {"", `bulkhead: {maxConnections: 10}`, true},
	"bulkhead.maxPendingRequests":                    {"", `bulkhead: {maxPendingRequests: 10}`, true},
	"bulkhead.maxRequests":                           {"", `bulkhead: {maxRequests: 10}`, false},
	"bulkhead.maxRetries":                            {"", `bulkhead: {maxRetries: 1}`, true},
	"bulkhead.maxRequestsPerConnection":              {"", `bulkhead: {maxRequestsPerConnection: 10}`, true},
	"healthCheck.http.path":                          {tcpCtx, httpCtx, true},
	"healthCheck.http.expectedStatuses":              {httpCtx, `healthCheck: {http: {path: /hc, expectedStatuses: [204]}}`, true},
	"healthCheck.grpc.serviceName":                   {`healthCheck: {grpc: {}}`, `healthCheck: {grpc: {serviceName: pay.v1.Payments}}`, true},
	"healthCheck.tcp":                                {httpCtx, tcpCtx, true},
	"healthCheck.interval":                           {tcpCtx, `healthCheck: {tcp: {}, interval: 7s}`, true},
	"healthCheck.timeout":                            {tcpCtx, `healthCheck: {tcp: {}, timeout: 2s}`, true},
	"healthCheck.unhealthyThreshold":                 {tcpCtx, `healthCheck: {tcp: {}, unhealthyThreshold: 5}`, true},
	"healthCheck.healthyThreshold":                   {tcpCtx, `healthCheck: {tcp: {}, healthyThreshold: 5}`, true},
	"fallback.service":                               {"", `fallback: {service: payments-static}`, false},
}

const coverageServices = `
apiVersion: bulwark/v1
kind: Service
metadata: {name: payments}
spec: {port: 8080, protocol: grpc, endpoints: [{address: 10.0.0.1, port: 9001}]}
---
apiVersion: bulwark/v1
kind: Service
metadata: {name: payments-static}
spec: {port: 8080, endpoints: [{address: 10.0.0.2, port: 9001}]}
`

// coverageSet is the two services and, unless spec is empty, a valid policy
// for payments with spec.
func coverageSet(t *testing.T, spec string) *policies.Set {
	t.Helper()
	bundle := coverageServices
	if spec != "" {
		bundle += "---\napiVersion: bulwark/v1\nkind: ResiliencePolicy\nmetadata: {name: p}\nspec: {target: {service: payments}, " + spec + "}\n"
	}
	rs, err := policies.DecodeAll([]byte(bundle))
	require.NoError(t, err)
	for _, r := range rs {
		require.Empty(t, policies.Validate(r, policies.ValidateOptions{}), spec)
	}
	return policies.NewSet(rs...)
}

func rendered(t *testing.T, set *policies.Set, flavor ir.Flavor) string {
	t.Helper()
	res, errs := Render(set, flavor, "")
	require.Empty(t, errs)
	out, err := MarshalJSON(res)
	require.NoError(t, err)
	return string(out)
}

func TestEveryLeafIsTranslated(t *testing.T) {
	leaves := map[string]bool{}
	for _, l := range policies.PolicyLeaves() {
		leaves[l.Path] = true
		t.Run(l.Path, func(t *testing.T) {
			tc, ok := translationCases[l.Path]
			require.True(t, ok, "%s: add its translation for each flavor (or list it as ignored) and a case to translationCases", l.Path)
			without, with := coverageSet(t, tc.ctx), coverageSet(t, tc.with)
			require.Equal(t, []string{l.Path}, setMinus(leavesOf(with), leavesOf(without)), "the case must set exactly %s", l.Path)

			require.NotEqual(t, rendered(t, without, ir.FlavorEnvoy), rendered(t, with, ir.FlavorEnvoy), "%s changes nothing Envoy receives", l.Path)
			ignored := lintSaysIgnored(policies.Lint(with), l.Path)
			if tc.grpcIgnored {
				require.True(t, ignored, "%s is listed as ignored by gRPC, but lint does not say so", l.Path)
				return
			}
			require.False(t, ignored, "lint says gRPC ignores %s: list it as ignored", l.Path)
			require.NotEqual(t, rendered(t, without, ir.FlavorGRPC), rendered(t, with, ir.FlavorGRPC), "%s changes nothing gRPC receives: translate it or list it as ignored", l.Path)
		})
	}
	for leaf := range translationCases {
		require.True(t, leaves[leaf], "translationCases names %s, which is not a leaf", leaf)
	}
}

// leavesOf lists the leaves policy p of set sets.
func leavesOf(set *policies.Set) []string {
	p := set.Policies["p"]
	if p == nil {
		return nil
	}
	return policies.SetLeaves(&p.Spec)
}

func setMinus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

// lintSaysIgnored reports whether lint finds leaf, or a section above it,
// ignored by proxyless gRPC clients.
func lintSaysIgnored(fs []policies.Finding, leaf string) bool {
	for _, f := range fs {
		field := strings.TrimPrefix(f.Field, "spec.")
		if (field == leaf || strings.HasPrefix(leaf, field+".")) && strings.Contains(f.Message, "ignored by proxyless gRPC clients") {
			return true
		}
	}
	return false
}

func TestEveryLeafIsDocumented(t *testing.T) {
	data, err := os.ReadFile("../docs/policies.md")
	require.NoError(t, err)
	rows := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "| `"); ok {
			if name, _, ok := strings.Cut(rest, "`"); ok {
				rows[name] = true
			}
		}
	}
	for _, l := range policies.PolicyLeaves() {
		require.True(t, rows[l.Path], "docs/policies.md has no row for %s (a table row starting with | `%s`)", l.Path, l.Path)
	}
}

func TestEveryLeafIsInTheSchema(t *testing.T) {
	data, err := os.ReadFile("../docs/openapi.json")
	require.NoError(t, err)
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				AllOf []schema `json:"allOf"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(data, &doc))
	var spec *schema
	for _, part := range doc.Components.Schemas["ResiliencePolicy"].AllOf {
		if s, ok := part.Properties["spec"]; ok {
			spec = s
		}
	}
	require.NotNil(t, spec, "docs/openapi.json: ResiliencePolicy has no spec schema")
	for _, l := range policies.PolicyLeaves() {
		s := spec
		for _, name := range strings.Split(l.Path, ".") {
			require.NotNil(t, s.Properties[name], "docs/openapi.json: the ResiliencePolicy spec schema has no property %s (at %s)", l.Path, name)
			s = s.Properties[name]
		}
	}
}

// schema is the part of an OpenAPI schema object the test reads.
type schema struct {
	Properties map[string]*schema `json:"properties"`
}
