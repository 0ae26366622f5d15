package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/adminapi"
	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// Every kind goes through put, get, list and delete over HTTP, and the store
// agrees at each step.
func TestAPICRUDEachKind(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	ctx := context.Background()
	for _, tc := range []struct{ plural, kind, name, body string }{
		{"services", policies.KindService, "payments", paymentsService},
		{"policies", policies.KindPolicy, "payments", paymentsPolicy},
		{"experiments", policies.KindExperiment, "payments-503", paymentsChaos},
	} {
		t.Run(tc.plural, func(t *testing.T) {
			path := "/v1/" + tc.plural + "/" + tc.name
			created := decode[writeReply](t, c.putYAML(path, tc.body), http.StatusCreated)
			require.Equal(t, api.ActionCreated, created.Action)
			require.Equal(t, tc.kind, created.Kind)
			require.Positive(t, created.Revision)
			require.NotNil(t, created.Warnings)

			stored, err := h.store.Get(ctx, tc.kind, tc.name)
			require.NoError(t, err)
			require.Equal(t, created.Revision, stored.GetMeta().Revision)

			got := c.get(path)
			require.Equal(t, http.StatusOK, got.code, "%s", got.body)
			require.Equal(t, etag(created.Revision), got.header.Get("ETag"))
			one, err := policies.DecodeStored(got.body)
			require.NoError(t, err)
			require.Equal(t, created.Revision, one.GetMeta().Revision)
			require.Equal(t, tc.name, one.GetMeta().Name)

			again := decode[writeReply](t, c.putYAML(path, tc.body), http.StatusOK)
			require.Equal(t, api.ActionUnchanged, again.Action)
			require.Equal(t, created.Revision, again.Revision)

			list := decode[listReply](t, c.get("/v1/"+tc.plural), http.StatusOK)
			require.Equal(t, tc.kind+"List", list.Kind)
			require.GreaterOrEqual(t, list.Revision, created.Revision)
			require.Len(t, list.Items, 1)

			deleted := decode[writeReply](t, c.del(path), http.StatusOK)
			require.Equal(t, api.ActionDeleted, deleted.Action)
			require.Greater(t, deleted.Revision, created.Revision)
			_, err = h.store.Get(ctx, tc.kind, tc.name)
			require.ErrorIs(t, err, store.ErrNotFound)
			problem(t, c.get(path), http.StatusNotFound)
			problem(t, c.del(path), http.StatusNotFound)
			require.Empty(t, decode[listReply](t, c.get("/v1/"+tc.plural), http.StatusOK).Items)
		})
	}
}

// Updates change the revision; JSON and every YAML media type are accepted;
// other media types are refused with 415.
func TestAPIContentTypes(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	js := `{"apiVersion":"bulwark/v1","kind":"Service","metadata":{"name":"payments"},"spec":{"port":8080,"endpoints":[{"address":"127.0.0.1","port":9001}]}}`
	first := decode[writeReply](t, c.do(http.MethodPut, "/v1/services/payments", "application/json; charset=utf-8", []byte(js)), http.StatusCreated)
	rev := first.Revision
	for i, ct := range []string{"application/yaml", "application/x-yaml", "text/yaml"} {
		body := strings.Replace(paymentsService, "port: 9001", "port: "+strconv.Itoa(9100+i), 1)
		r := decode[writeReply](t, c.do(http.MethodPut, "/v1/services/payments", ct, []byte(body)), http.StatusOK)
		require.Equal(t, api.ActionUpdated, r.Action, ct)
		require.Greater(t, r.Revision, rev, ct)
		rev = r.Revision
		stored, err := policies.DecodeStored(r.Resource)
		require.NoError(t, err)
		require.Equal(t, rev, stored.GetMeta().Revision)
	}
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "not a type;;"} {
		p := problem(t, c.do(http.MethodPut, "/v1/services/payments", ct, []byte(js)), http.StatusUnsupportedMediaType)
		require.Contains(t, p.Detail, "application/yaml", ct)
	}
	p := problem(t, c.do(http.MethodPut, "/v1/services/payments", "application/json; charset=latin1", []byte(js)), http.StatusUnsupportedMediaType)
	require.Contains(t, p.Detail, "UTF-8")
	problem(t, c.post("/v1/apply", "text/plain", paymentsService), http.StatusUnsupportedMediaType)
}

// If-Match (or metadata.revision in the body) makes a write a
// compare-and-swap: a stale revision gets 409 and changes nothing.
func TestAPICompareAndSwap(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	created := decode[writeReply](t, c.putYAML("/v1/policies/payments", paymentsPolicy), http.StatusCreated)
	changed := strings.Replace(paymentsPolicy, "request: 3s", "request: 2s", 1)
	updated := decode[writeReply](t, c.putYAML("/v1/policies/payments", changed, "If-Match", etag(created.Revision)), http.StatusOK)
	require.Equal(t, api.ActionUpdated, updated.Action)

	stale := strings.Replace(paymentsPolicy, "request: 3s", "request: 1s", 1)
	p := problem(t, c.putYAML("/v1/policies/payments", stale, "If-Match", strconv.FormatInt(created.Revision, 10)), http.StatusConflict)
	require.Contains(t, p.Detail, fmt.Sprintf("expected revision %d, found %d", created.Revision, updated.Revision))
	withRev := strings.Replace(stale, "metadata: {name: payments}", fmt.Sprintf("metadata: {name: payments, revision: %d}", created.Revision), 1)
	problem(t, c.putYAML("/v1/policies/payments", withRev), http.StatusConflict)
	problem(t, c.putYAML("/v1/policies/other", strings.Replace(paymentsPolicy, "name: payments}", "name: other}", 1), "If-Match", "7"), http.StatusConflict)
	problem(t, c.del("/v1/policies/payments", "If-Match", strconv.FormatInt(created.Revision, 10)), http.StatusConflict)
	bad := problem(t, c.putYAML("/v1/policies/payments", stale, "If-Match", "abc"), http.StatusBadRequest)
	require.True(t, hasViolation(bad, "If-Match"))

	got, err := h.store.Get(context.Background(), policies.KindPolicy, "payments")
	require.NoError(t, err)
	require.Equal(t, "2s", got.(*policies.ResiliencePolicy).Spec.Timeouts.Request.String(), "refused writes changed nothing")
	decode[writeReply](t, c.del("/v1/policies/payments", "If-Match", etag(updated.Revision)), http.StatusOK)
}

// A write that would create a conflict of equal specificity is refused and
// names the other policy; a more specific target is accepted.
func TestAPIConflictingWriteRefused(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	decode[writeReply](t, c.putYAML("/v1/services/payments", paymentsService), http.StatusCreated)
	decode[writeReply](t, c.putYAML("/v1/policies/payments", paymentsPolicy), http.StatusCreated)
	rival := `apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments-fast}
spec:
  target: {service: payments}
  timeouts: {request: 1s}
`
	p := problem(t, c.putYAML("/v1/policies/payments-fast", rival), http.StatusConflict)
	require.Contains(t, p.Detail, "payments and payments-fast")
	require.Contains(t, p.Detail, "timeouts.request")
	require.Len(t, p.Conflicts, 1)
	require.ElementsMatch(t, []string{"payments", "payments-fast"}, p.Conflicts[0].Policies)
	_, err := h.store.Get(context.Background(), policies.KindPolicy, "payments-fast")
	require.ErrorIs(t, err, store.ErrNotFound)

	// The same conflict through an apply bundle.
	problem(t, c.post("/v1/apply", "application/yaml", rival), http.StatusConflict)

	scoped := strings.Replace(rival, "target: {service: payments}", "target: {service: payments}\n  sources: [checkout]", 1)
	decode[writeReply](t, c.putYAML("/v1/policies/payments-fast", scoped), http.StatusCreated)
}

// Bad input of every kind is a 400 (or 413) problem with field paths, and
// writes nothing.
func TestAPIBadInput(t *testing.T) {
	h := newHarness(t)
	c := h.api("")

	p := problem(t, c.putYAML("/v1/services/payments", "apiVersion: bulwark/v1\nkind: Service\nmetadata: {name: payments\n"), http.StatusBadRequest)
	require.Contains(t, p.Detail, "malformed YAML")

	p = problem(t, c.do(http.MethodPut, "/v1/services/payments", "application/json", []byte(`{"kind": "Service",`)), http.StatusBadRequest)
	require.Contains(t, p.Detail, "malformed JSON")

	unknown := strings.Replace(paymentsPolicy, "timeouts: {request: 3s}", "timeouts: {request: 3s}\n  retries: {atempts: 2}", 1)
	p = problem(t, c.putYAML("/v1/policies/payments", unknown), http.StatusBadRequest)
	require.True(t, hasViolation(p, "spec.retries.atempts"), "%+v", p.Violations)

	// An unknown field and an out-of-range value in one document: both reported.
	both := strings.Replace(unknown, "atempts: 2", "atempts: 2, perTryTimeout: -1s", 1)
	p = problem(t, c.putYAML("/v1/policies/payments", both), http.StatusBadRequest)
	require.True(t, hasViolation(p, "spec.retries.atempts") && hasViolation(p, "spec.retries.perTryTimeout"), "%+v", p.Violations)

	wrongType := strings.Replace(paymentsService, "port: 50051", "port: fifty", 1)
	p = problem(t, c.putYAML("/v1/services/payments", wrongType), http.StatusBadRequest)
	require.True(t, hasViolation(p, "spec.port"), "%+v", p.Violations)

	invalidValue := strings.Replace(paymentsPolicy, "request: 3s", "request: -3s", 1)
	p = problem(t, c.putYAML("/v1/policies/payments", invalidValue), http.StatusBadRequest)
	require.NotEmpty(t, p.Violations)

	p = problem(t, c.putYAML("/v1/services/billing", paymentsService), http.StatusBadRequest)
	require.True(t, hasViolation(p, "metadata.name"), "%+v", p.Violations)
	p = problem(t, c.putYAML("/v1/policies/payments", paymentsService), http.StatusBadRequest)
	require.True(t, hasViolation(p, "kind"), "%+v", p.Violations)
	problem(t, c.putYAML("/v1/services/payments", paymentsService+"---\n"+paymentsPolicy), http.StatusBadRequest)
	problem(t, c.putYAML("/v1/services/payments", "# nothing\n"), http.StatusBadRequest)
	problem(t, c.get("/v1/services/Not_A_Name"), http.StatusBadRequest)

	p = problem(t, c.post("/v1/apply", "application/yaml", paymentsService+"---\n"+unknown), http.StatusBadRequest)
	require.True(t, hasViolation(p, "items[1].spec.retries.atempts"), "%+v", p.Violations)

	huge := paymentsService + "# " + strings.Repeat("x", 2<<20) + "\n"
	p = problem(t, c.putYAML("/v1/services/payments", huge), http.StatusRequestEntityTooLarge)
	require.Contains(t, p.Detail, "1048576")
	problem(t, c.post("/v1/apply", "application/yaml", huge), http.StatusRequestEntityTooLarge)

	p = problem(t, c.get("/v1/nothing-here"), http.StatusNotFound)
	require.Contains(t, p.Detail, "/v1/nothing-here")
	r := c.do(http.MethodPatch, "/v1/services/payments", "application/json", []byte("{}"))
	p = problem(t, r, http.StatusMethodNotAllowed)
	require.Contains(t, r.header.Get("Allow"), "PUT")

	list := decode[listReply](t, c.get("/v1/services"), http.StatusOK)
	require.Empty(t, list.Items, "nothing was written")
}

// With etcd gone, reads and writes answer 503 with a clear detail.
func TestAPIStoreUnavailable(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	decode[writeReply](t, c.putYAML("/v1/services/payments", paymentsService), http.StatusCreated)
	h.etcd.Close()
	p := problem(t, c.putYAML("/v1/policies/payments", paymentsPolicy), http.StatusServiceUnavailable)
	require.Contains(t, p.Detail, "store (etcd) is unreachable")
	require.Equal(t, "urn:bulwark:problem:store-unavailable", p.Type)
	problem(t, c.get("/v1/services"), http.StatusServiceUnavailable)
}

// GET /v1/config answers with a group's exact xDS, by node or by service
// and flavor.
func TestAPIConfig(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	b := startBackend(t, "ok", nil)
	h.apply(serviceYAML("payments", b.port))
	client, nodeID := h.dial("checkout", "payments")
	eventually(t, 10*time.Second, func() error { _, err := call(client, time.Second, "x"); return err })

	type config struct {
		Listeners []map[string]any `json:"listeners"`
		Clusters  []map[string]any `json:"clusters"`
		Endpoints []map[string]any `json:"endpoints"`
	}
	byNode := decode[config](t, c.get("/v1/config?node="+nodeID), http.StatusOK)
	require.NotEmpty(t, byNode.Listeners)
	require.Contains(t, fmt.Sprint(byNode.Clusters), "payments")
	require.Contains(t, fmt.Sprint(byNode.Endpoints), strconv.Itoa(b.port))

	byService := decode[config](t, c.get("/v1/config?service=checkout&flavor=grpc"), http.StatusOK)
	require.Equal(t, byNode, byService)
	envoy := decode[config](t, c.get("/v1/config?service=checkout"), http.StatusOK)
	require.Contains(t, fmt.Sprint(envoy.Listeners), "15001", "the Envoy flavor gets the outbound listener")

	problem(t, c.get("/v1/config?node=nobody"), http.StatusNotFound)
	problem(t, c.get("/v1/config?service=checkout&flavor=istio"), http.StatusBadRequest)
	problem(t, c.get("/v1/config"), http.StatusBadRequest)
}

// A small body whose YAML aliases expand into billions of values is refused
// (the decoder bounds the expansion) instead of tying up the server.
func TestAPIAliasExpansionRefused(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	var b strings.Builder
	b.WriteString("apiVersion: bulwark/v1\nkind: Service\nmetadata: {name: payments}\nx: &a {")
	for i := range 20000 {
		fmt.Fprintf(&b, "k%d: 1, ", i)
	}
	b.WriteString("}\nspec:\n  port: 1\n  endpoints: [")
	for range 20000 {
		b.WriteString("*a, ")
	}
	b.WriteString("]\n")
	c.http.Timeout = 2 * time.Minute // the race detector slows the refusal down
	p := problem(t, c.putYAML("/v1/services/payments", b.String()), http.StatusBadRequest)
	require.Contains(t, p.Detail, "aliases")
	require.LessOrEqual(t, len(p.Violations), 1002)
}

func TestAPIOpenAPIServed(t *testing.T) {
	h := newHarness(t)
	r := h.api("").get("/v1/openapi.json")
	require.Equal(t, http.StatusOK, r.code)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	require.Equal(t, adminapi.OpenAPI, r.body)
}
