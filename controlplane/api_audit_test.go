package controlplane

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/audit"
)

const auditBundle = `apiVersion: bulwark/v1
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
kind: ResiliencePolicy
metadata: {name: mesh-default}
spec:
  target: {service: "*"}
  timeouts: {request: 3s}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  retries: {attempts: 2, backoff: {base: 50ms, max: 500ms}, budget: {percent: 20}}
  circuitBreaker: {consecutive5xx: 5, maxEjectionPercent: 50}
  bulkhead: {maxConnections: 100, maxRequests: 200}
  healthCheck: {grpc: {}, interval: 5s, timeout: 1s}
  fallback: {service: payments-static}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: ledger-from-checkout}
spec:
  target: {service: ledger}
  sources: [checkout]
  retries: {attempts: 1}
`

func checkOf(t *testing.T, rep api.AuditReport, service, item string) api.AuditCheck {
	t.Helper()
	for _, s := range rep.Services {
		if s.Service != service {
			continue
		}
		for _, c := range s.Checks {
			if c.Item == item {
				return c
			}
		}
	}
	t.Fatalf("no %s check for %s in %+v", item, service, rep)
	return api.AuditCheck{}
}

// The audit lists every item per service, the policy that provides each,
// and what to add where something is missing; a chaos experiment counts
// once it ran.
func TestAPIAudit(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	decode[api.ApplyResult](t, c.post("/v1/apply", "application/yaml", auditBundle), http.StatusOK)

	rep := decode[api.AuditReport](t, c.get("/v1/audit"), http.StatusOK)
	require.Len(t, rep.Services, 3)
	require.Positive(t, rep.Revision)

	timeouts := checkOf(t, rep, "payments", api.AuditTimeouts)
	require.Equal(t, api.AuditOK, timeouts.Status)
	require.Equal(t, []string{"mesh-default"}, timeouts.ProvidedBy)
	require.Contains(t, timeouts.Detail, "3s")
	for _, item := range []string{api.AuditCircuitBreaker, api.AuditBulkhead, api.AuditFallback, api.AuditHealthCheck} {
		ck := checkOf(t, rep, "payments", item)
		require.Equal(t, api.AuditOK, ck.Status, item)
		require.Equal(t, []string{"payments"}, ck.ProvidedBy, item)
		require.Empty(t, ck.Fix, item)
	}
	retries := checkOf(t, rep, "payments", api.AuditRetries)
	require.Equal(t, api.AuditOK, retries.Status)
	require.Contains(t, retries.Detail, "50ms to 500ms")
	chaos := checkOf(t, rep, "payments", api.AuditChaos)
	require.Equal(t, api.AuditMissing, chaos.Status)
	require.Contains(t, chaos.Fix, "chaos start")

	cb := checkOf(t, rep, "ledger", api.AuditCircuitBreaker)
	require.Equal(t, api.AuditMissing, cb.Status)
	require.Empty(t, cb.ProvidedBy)
	require.Contains(t, cb.Fix, "circuitBreaker")
	require.Contains(t, cb.Fix, "ledger")
	// Only calls from checkout retry: the others do not.
	lr := checkOf(t, rep, "ledger", api.AuditRetries)
	require.Equal(t, api.AuditPartial, lr.Status)
	require.Equal(t, []string{"ledger-from-checkout"}, lr.ProvidedBy)
	require.Equal(t, []string{"*"}, lr.MissingFor)
	require.Contains(t, lr.Fix, "without sources")

	for _, s := range rep.Services {
		if s.Service == "payments" {
			require.Equal(t, 7, s.Total)
			require.Equal(t, 6, s.Passed)
		}
	}

	decode[writeReply](t, c.putYAML("/v1/experiments/payments-503", paymentsChaos), http.StatusCreated)
	decode[api.KillSwitchResult](t, c.post("/v1/experiments/stop", "", ""), http.StatusOK)
	one := decode[api.AuditReport](t, c.get("/v1/audit?service=payments"), http.StatusOK)
	require.Len(t, one.Services, 1)
	chaos = checkOf(t, one, "payments", api.AuditChaos)
	require.Equal(t, api.AuditOK, chaos.Status, "a stopped experiment still ran")
	require.Equal(t, []string{"payments-503"}, chaos.ProvidedBy)
	require.Equal(t, 7, one.Services[0].Passed)

	// Experiments older than the window do not count.
	set, rev, _, err := h.store.Load(t.Context())
	require.NoError(t, err)
	hist, err := h.store.History(t.Context())
	require.NoError(t, err)
	old := audit.Report(set, rev, hist, "payments", time.Now().Add(api.AuditWindow+time.Hour))
	require.Equal(t, api.AuditMissing, checkOf(t, *old, "payments", api.AuditChaos).Status)

	problem(t, c.get("/v1/audit?service=nowhere"), http.StatusNotFound)
}
