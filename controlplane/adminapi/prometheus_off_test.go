package adminapi_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// Without --prometheus-url everything that needs it is off and says so: a
// steadyState is refused with its field, recommendations answer 501, the
// audit's circuit state is unknown with the reason, status says
// configured: false.
func TestWithoutPrometheusItIsOffAndSaysSo(t *testing.T) {
	e := newEnv(t, nil)
	exp := `apiVersion: bulwark/v1
kind: ChaosExperiment
metadata: {name: gd}
spec:
  target: {service: payments}
  abort: {percent: 10, grpcStatus: 14}
  duration: 1m
  steadyState: {checks: [{name: errors, query: "vector(0)", below: 0.1}]}
`
	r := e.do(t, "PUT", "/v1/experiments/gd", "", "application/yaml", exp)
	p := problem(t, r, http.StatusBadRequest, api.ProblemInvalid)
	require.Equal(t, "spec.steadyState", p.Violations[0].Field)
	require.Contains(t, p.Violations[0].Message, "--prometheus-url")
	require.Equal(t, http.StatusNotFound, e.do(t, "GET", "/v1/experiments/gd", "", "", "").code, "nothing started")

	r = e.do(t, "GET", "/v1/recommendations", "", "", "")
	problem(t, r, http.StatusNotImplemented, api.ProblemPrometheusOff)

	r = e.do(t, "PUT", "/v1/services/payments", "", "application/yaml", "apiVersion: bulwark/v1\nkind: Service\nmetadata: {name: payments}\nspec: {port: 80}\n")
	require.Equal(t, http.StatusCreated, r.code, "%s", r.body)
	rep := decodeJSON[api.AuditReport](t, e.do(t, "GET", "/v1/audit", "", "", ""), http.StatusOK)
	require.Len(t, rep.Services, 1)
	require.False(t, rep.Services[0].Circuit.Known)
	require.Contains(t, rep.Services[0].Circuit.Reason, "--prometheus-url")

	st := decodeJSON[api.StatusReport](t, e.do(t, "GET", "/v1/status", "", "", ""), http.StatusOK)
	require.False(t, st.Prometheus.Configured)
}
