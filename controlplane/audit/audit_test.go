package audit_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/audit"
	"github.com/bulwarkmesh/bulwark/policies"
)

const mesh = `apiVersion: bulwark/v1
kind: Service
metadata: {name: payments}
spec: {protocol: grpc, port: 50051, endpoints: [{address: 127.0.0.1, port: 9001}]}
---
apiVersion: bulwark/v1
kind: Service
metadata: {name: payments-static}
spec: {protocol: grpc, port: 50051, endpoints: [{address: 127.0.0.1, port: 9002}]}
---
apiVersion: bulwark/v1
kind: Service
metadata: {name: ledger}
spec: {protocol: grpc, port: 50051, endpoints: [{address: 127.0.0.1, port: 9003}]}
---
apiVersion: bulwark/v1
kind: Service
metadata: {name: legacy}
spec: {protocol: http, port: 8080, endpoints: [{address: 127.0.0.1, port: 9004}]}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: mesh-default}
spec:
  target: {service: "*"}
  timeouts: {connect: 1s, request: 3s}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  retries: {attempts: 2, backoff: {base: 50ms, max: 500ms}, budget: {percent: 20}}
  circuitBreaker: {consecutive5xx: 5, maxEjectionPercent: 50}
  fallback: {service: payments-static}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments-static}
spec:
  target: {service: payments-static}
  retries: {attempts: 0}
  healthCheck: {grpc: {}, interval: 5s, timeout: 1s}
  bulkhead: {maxConnections: 100}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: ledger-from-checkout}
spec:
  target: {service: ledger}
  sources: [checkout]
  retries: {attempts: 1}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: legacy}
spec:
  target: {service: legacy}
  timeouts: {request: "off"}
  retries: {attempts: 3}
  fallback: {service: legacy-static}
---
apiVersion: bulwark/v1
kind: ChaosExperiment
metadata: {name: static-latency}
spec:
  target: {service: payments-static}
  delay: {percent: 5, fixed: 200ms}
  duration: 10m
`

// experiment returns a run of an experiment on service that started at started.
func experiment(name, service string, started time.Time) *policies.ChaosExperiment {
	return &policies.ChaosExperiment{
		Metadata: policies.Metadata{Name: name},
		Spec:     policies.ExperimentSpec{Target: policies.Target{Service: service}},
		Status:   &policies.ExperimentStatus{StartedAt: started.UTC().Format(time.RFC3339Nano)},
	}
}

func TestReport(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	rs, err := policies.DecodeAll([]byte(mesh))
	require.NoError(t, err)
	set := policies.NewSet(rs...)
	for _, r := range rs {
		require.Empty(t, policies.Validate(r, policies.ValidateOptions{}), "%s %s: test input must validate", r.GetKind(), r.GetMeta().Name)
	}
	// The experiment in the set is running: it started two days ago.
	set.Experiments["static-latency"].Status = &policies.ExperimentStatus{StartedAt: now.Add(-48 * time.Hour).Format(time.RFC3339Nano)}
	hist := []*policies.ChaosExperiment{
		experiment("payments-503", "payments", now.Add(-time.Hour)),
		experiment("payments-503", "payments", now.Add(-2*time.Hour)), // the same game day, run twice
		experiment("payments-old", "payments", now.Add(-api.AuditWindow-time.Hour)),
		experiment("ledger-old", "ledger", now.Add(-api.AuditWindow-time.Minute)),
		experiment("legacy-bad-time", "legacy", time.Time{}),
	}
	hist[4].Status.StartedAt = "not a time"

	rep := audit.Report(set, 42, hist, "", now)
	require.Equal(t, int64(42), rep.Revision)
	require.Equal(t, now, rep.GeneratedAt)
	byService := map[string]api.ServiceAudit{}
	var names []string
	for _, sa := range rep.Services {
		byService[sa.Service] = sa
		names = append(names, sa.Service)
	}
	require.Equal(t, []string{"ledger", "legacy", "payments", "payments-static"}, names)

	for _, tc := range []struct {
		service, item, status string
		providedBy            []string
		detail                string // a part of the detail
		missingFor            []string
		fix                   string // a part of the fix; "" for none
	}{
		{"payments", api.AuditTimeouts, api.AuditOK, []string{"mesh-default"}, "request timeout 3s", nil, ""},
		{"payments", api.AuditCircuitBreaker, api.AuditOK, []string{"payments"}, "outlier ejection", nil, ""},
		{"payments", api.AuditRetries, api.AuditOK, []string{"payments"}, "2 retries, backoff 50ms to 500ms with jitter", nil, ""},
		{"payments", api.AuditBulkhead, api.AuditMissing, nil, "no connection-pool limits", nil, "bulkhead"},
		{"payments", api.AuditFallback, api.AuditOK, []string{"payments"}, "falls back to payments-static", nil, ""},
		{"payments", api.AuditHealthCheck, api.AuditMissing, nil, "no active health check", nil, "healthCheck"},
		{"payments", api.AuditChaos, api.AuditOK, []string{"payments-503"}, "last experiment payments-503 started 2026-06-01T11:00:00Z", nil, ""},

		{"payments-static", api.AuditTimeouts, api.AuditOK, []string{"mesh-default"}, "3s", nil, ""},
		{"payments-static", api.AuditRetries, api.AuditMissing, nil, "retries are disabled (attempts: 0)", nil, "retries"},
		{"payments-static", api.AuditBulkhead, api.AuditOK, []string{"payments-static"}, "connection-pool limits", nil, ""},
		{"payments-static", api.AuditHealthCheck, api.AuditOK, []string{"payments-static"}, "active gRPC health check", nil, ""},
		{"payments-static", api.AuditFallback, api.AuditMissing, nil, "no graceful degradation", nil, "payments-static-fallback"},
		{"payments-static", api.AuditChaos, api.AuditOK, []string{"static-latency"}, "static-latency", nil, ""},

		// Only calls from checkout retry.
		{"ledger", api.AuditRetries, api.AuditPartial, []string{"ledger-from-checkout"}, "missing for *", []string{"*"}, "without sources"},
		{"ledger", api.AuditTimeouts, api.AuditOK, []string{"mesh-default"}, "3s", nil, ""},
		{"ledger", api.AuditCircuitBreaker, api.AuditMissing, nil, "never ejected", nil, "targeting ledger"},
		{"ledger", api.AuditChaos, api.AuditMissing, nil, "no chaos experiment on ledger in the last 30 days", nil, "chaos start"},

		// A service policy that switches the timeout off beats the mesh default.
		{"legacy", api.AuditTimeouts, api.AuditMissing, nil, "switched off", nil, "timeouts.request"},
		{"legacy", api.AuditRetries, api.AuditOK, []string{"legacy"}, "3 retries, default backoff", nil, ""},
		{"legacy", api.AuditFallback, api.AuditMissing, nil, `the fallback service "legacy-static" does not exist`, nil, "fallback"},
		{"legacy", api.AuditChaos, api.AuditMissing, nil, "untested", nil, "legacy"},
	} {
		t.Run(tc.service+"/"+tc.item, func(t *testing.T) {
			var c *api.AuditCheck
			for i := range byService[tc.service].Checks {
				if byService[tc.service].Checks[i].Item == tc.item {
					c = &byService[tc.service].Checks[i]
				}
			}
			require.NotNil(t, c, "no %s check for %s", tc.item, tc.service)
			require.Equal(t, tc.status, c.Status, "%+v", c)
			require.Equal(t, tc.providedBy, c.ProvidedBy, "%+v", c)
			require.Contains(t, c.Detail, tc.detail)
			require.Equal(t, tc.missingFor, c.MissingFor)
			if tc.fix == "" {
				require.Empty(t, c.Fix)
			} else {
				require.Contains(t, c.Fix, tc.fix)
			}
		})
	}

	for _, tc := range []struct {
		service       string
		passed, total int
	}{
		{"payments", 5, 7},
		{"payments-static", 4, 7},
		{"ledger", 1, 7},
		{"legacy", 1, 7},
	} {
		sa := byService[tc.service]
		require.Equal(t, tc.total, sa.Total, tc.service)
		require.Equal(t, tc.passed, sa.Passed, tc.service)
		items := make([]string, len(sa.Checks))
		for i, c := range sa.Checks {
			items[i] = c.Item
		}
		require.Equal(t, []string{api.AuditTimeouts, api.AuditCircuitBreaker, api.AuditRetries, api.AuditBulkhead, api.AuditFallback, api.AuditHealthCheck, api.AuditChaos}, items, "the checklist order")
	}
}

// Asked for one service, the report has that service alone; a later "now"
// puts the same experiments outside the window.
func TestReportOfOneServiceAndTheWindow(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	rs, err := policies.DecodeAll([]byte(mesh))
	require.NoError(t, err)
	set := policies.NewSet(rs...)
	hist := []*policies.ChaosExperiment{experiment("payments-503", "payments", now.Add(-time.Hour))}

	for _, tc := range []struct {
		name string
		now  time.Time
		want string
	}{
		{"inside the window", now, api.AuditOK},
		{"at the window's end", now.Add(api.AuditWindow - time.Hour), api.AuditOK},
		{"past the window", now.Add(api.AuditWindow), api.AuditMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := audit.Report(set, 1, hist, "payments", tc.now)
			require.Len(t, rep.Services, 1)
			require.Equal(t, "payments", rep.Services[0].Service)
			chaos := rep.Services[0].Checks[len(rep.Services[0].Checks)-1]
			require.Equal(t, api.AuditChaos, chaos.Item)
			require.Equal(t, tc.want, chaos.Status)
		})
	}
	require.Empty(t, audit.Report(set, 1, hist, "nowhere", now).Services)
}

// The chaos check says how the last game day's hypothesis fared, and a
// broken one points at its readings.
func TestReportSaysTheLastVerdict(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	rs, err := policies.DecodeAll([]byte(mesh))
	require.NoError(t, err)
	set := policies.NewSet(rs...)
	held := experiment("payments-held", "payments", now.Add(-2*time.Hour))
	held.Status.Verdict = policies.VerdictHeld
	broke := experiment("payments-broke", "payments", now.Add(-time.Hour))
	broke.Status.Verdict = policies.VerdictAborted
	chaos := func(hist ...*policies.ChaosExperiment) api.AuditCheck {
		cs := audit.Report(set, 1, hist, "payments", now).Services[0].Checks
		return cs[len(cs)-1]
	}
	c := chaos(held)
	require.Contains(t, c.Detail, "its hypothesis: held")
	require.Empty(t, c.Fix)
	c = chaos(held, broke)
	require.Contains(t, c.Detail, "payments-broke")
	require.Contains(t, c.Detail, "its hypothesis: aborted")
	require.Contains(t, c.Fix, "experiment-breached-hypothesis")
}
