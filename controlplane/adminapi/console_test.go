package adminapi_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/adminapi"
	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// whoami names the token's holder and role; without a token file the
// caller is an anonymous editor, as every route lets it act.
func TestAPIWhoAmI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(path, []byte("viewer-0123456789abcdef viewer dashboards\neditor-0123456789abcdef editor\n"), 0o600))
	tokens, err := adminapi.LoadTokens(path)
	require.NoError(t, err)
	e := newEnv(t, tokens)
	require.Equal(t, api.WhoAmI{Name: "dashboards", Role: "viewer", Authentication: true},
		decodeJSON[api.WhoAmI](t, e.do(t, http.MethodGet, "/v1/whoami", "viewer-0123456789abcdef", "", ""), http.StatusOK))
	require.Equal(t, api.WhoAmI{Name: "token@line2", Role: "editor", Authentication: true},
		decodeJSON[api.WhoAmI](t, e.do(t, http.MethodGet, "/v1/whoami", "editor-0123456789abcdef", "", ""), http.StatusOK))
	problem(t, e.do(t, http.MethodGet, "/v1/whoami", "", "", ""), http.StatusUnauthorized, "unauthorized")

	open := newEnv(t, nil)
	require.Equal(t, api.WhoAmI{Name: "anonymous", Role: "editor"},
		decodeJSON[api.WhoAmI](t, open.do(t, http.MethodGet, "/v1/whoami", "", "", ""), http.StatusOK))
}

const effectiveMesh = `apiVersion: bulwark/v1
kind: Service
metadata: {name: payments, labels: {tier: critical}}
spec:
  protocol: http
  port: 8080
  endpoints: [{address: 127.0.0.1, port: 9001}]
---
apiVersion: bulwark/v1
kind: Service
metadata: {name: ledger}
spec:
  protocol: http
  port: 8080
  endpoints: [{address: 127.0.0.1, port: 9002}]
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: mesh}
spec:
  target: {service: "*"}
  timeouts: {connect: 1s, request: 5s}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: critical}
spec:
  target: {selector: {tier: critical}}
  bulkhead: {maxRequests: 100}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: 2s}
  healthCheck:
    http: {path: /ready}
    interval: 5s
    timeout: 1s
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments-charge}
spec:
  target: {service: payments, route: {pathPrefix: /charge}}
  timeouts: {request: 900ms}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: checkout-payments}
spec:
  target: {service: payments}
  sources: [checkout]
  timeouts: {request: 1500ms}
`

// fieldsOf maps each field of a merged policy to its value, policy and level.
func fieldsOf(t *testing.T, it api.EffectiveService) map[string][3]string {
	out := map[string][3]string{}
	for _, f := range it.Fields {
		var v any
		require.NoError(t, json.Unmarshal(f.Value, &v))
		b, _ := json.Marshal(v)
		out[f.Field] = [3]string{string(b), f.Policy, f.Level}
	}
	return out
}

// /v1/effective merges the policies of each service field by field and
// says where each field comes from: mesh default, selector, service, route,
// and a source-scoped policy for its caller.
func TestAPIEffectivePolicy(t *testing.T) {
	e := newEnv(t, nil)
	decodeJSON[api.ApplyResult](t, e.do(t, http.MethodPost, "/v1/apply", "", "application/yaml", effectiveMesh), http.StatusOK)

	all := decodeJSON[api.EffectiveReport](t, e.do(t, http.MethodGet, "/v1/effective", "", "", ""), http.StatusOK)
	require.NotZero(t, all.Revision)
	require.Len(t, all.Items, 2)
	require.Equal(t, "ledger", all.Items[0].Service)
	require.Equal(t, map[string][3]string{
		"timeouts.connect": {`"1s"`, "mesh", api.LevelMesh},
		"timeouts.request": {`"5s"`, "mesh", api.LevelMesh},
	}, fieldsOf(t, all.Items[0]))

	pay := all.Items[1]
	require.Equal(t, []string{"checkout"}, pay.Sources)
	require.Equal(t, []string{"/charge"}, pay.Routes)
	require.Equal(t, map[string][3]string{
		"timeouts.connect":      {`"1s"`, "mesh", api.LevelMesh},
		"timeouts.request":      {`"2s"`, "payments", api.LevelService},
		"bulkhead.maxRequests":  {`100`, "critical", api.LevelSelector},
		"healthCheck.http.path": {`"/ready"`, "payments", api.LevelService},
		"healthCheck.interval":  {`"5s"`, "payments", api.LevelService},
		"healthCheck.timeout":   {`"1s"`, "payments", api.LevelService},
	}, fieldsOf(t, pay))

	route := decodeJSON[api.EffectiveReport](t, e.do(t, http.MethodGet, "/v1/effective?service=payments&route=/charge", "", "", ""), http.StatusOK)
	require.Len(t, route.Items, 1)
	require.Equal(t, [3]string{`"900ms"`, "payments-charge", api.LevelRoute}, fieldsOf(t, route.Items[0])["timeouts.request"])

	src := decodeJSON[api.EffectiveReport](t, e.do(t, http.MethodGet, "/v1/effective?service=payments&source=checkout", "", "", ""), http.StatusOK)
	f := src.Items[0].Fields
	var req api.EffectiveField
	for _, x := range f {
		if x.Field == "timeouts.request" {
			req = x
		}
	}
	require.Equal(t, "checkout-payments", req.Policy)
	require.Equal(t, []string{"checkout"}, req.Sources)

	p := problem(t, e.do(t, http.MethodGet, "/v1/effective?service=nope", "", "", ""), http.StatusNotFound, "not-found")
	require.Contains(t, p.Detail, "nope")
	p = problem(t, e.do(t, http.MethodGet, "/v1/effective?source=checkout", "", "", ""), http.StatusBadRequest, "invalid")
	require.Equal(t, "service", p.Violations[0].Field)
}
