package controlplane

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

const (
	ledgerService = `apiVersion: bulwark/v1
kind: Service
metadata: {name: ledger}
spec:
  port: 8080
  endpoints: [{address: 127.0.0.1, port: 9002}]
`
	ledgerPolicy = `apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: ledger}
spec:
  target: {service: ledger}
  timeouts: {request: 2s}
  retries: {attempts: 3, on: [5xx]}
`
)

func actions(items []api.ApplyItem) map[string]string {
	out := map[string]string{}
	for _, it := range items {
		out[it.Kind+"/"+it.Name] = it.Action
	}
	return out
}

// An apply writes a bundle atomically and records its source; a dry run
// answers the same without writing; prune deletes what the source applied
// before and no longer declares, and nothing of other sources.
func TestAPIApplyPruneAndDryRun(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	ctx := context.Background()

	// Not the source's: prune must leave it alone.
	decode[writeReply](t, c.putYAML("/v1/services/payments", paymentsService), http.StatusCreated)

	bundle := ledgerService + "---\n" + ledgerPolicy + "---\n" + paymentsPolicy
	res := decode[api.ApplyResult](t, c.post("/v1/apply?source=ci", "application/yaml", bundle), http.StatusOK)
	require.Equal(t, map[string]string{
		"Service/ledger": api.ActionCreated, "ResiliencePolicy/ledger": api.ActionCreated, "ResiliencePolicy/payments": api.ActionCreated,
	}, actions(res.Items))
	for _, it := range res.Items {
		require.Equal(t, res.Revision, it.Revision)
	}
	require.NotEmpty(t, res.Warnings, "retrying 5xx without methods is linted")
	var linted bool
	for _, f := range res.Warnings {
		linted = linted || (f.Kind == policies.KindPolicy && f.Name == "ledger")
	}
	require.True(t, linted, "%+v", res.Warnings)
	stored, err := h.store.Get(ctx, policies.KindPolicy, "ledger")
	require.NoError(t, err)
	require.Equal(t, "ci", stored.GetMeta().Source)
	require.Equal(t, res.Revision, stored.GetMeta().Revision)

	// The same bundle as JSON {"items": [...]}: nothing changes.
	var items []json.RawMessage
	for _, doc := range strings.Split(bundle, "---\n") {
		r, err := policies.DecodeOne([]byte(doc))
		require.NoError(t, err)
		b, err := json.Marshal(r)
		require.NoError(t, err)
		items = append(items, b)
	}
	list, err := json.Marshal(map[string]any{"items": items})
	require.NoError(t, err)
	again := decode[api.ApplyResult](t, c.post("/v1/apply?source=ci", "application/json", string(list)), http.StatusOK)
	for _, it := range again.Items {
		require.Equal(t, api.ActionUnchanged, it.Action, it.Name)
	}

	// Dropping the ledger policy and editing the service, as a dry run.
	edited := strings.Replace(ledgerService, "port: 9002", "port: 9003", 1) + "---\n" + paymentsPolicy
	dry := decode[api.ApplyResult](t, c.post("/v1/apply?source=ci&prune=true&dryRun=true", "application/yaml", edited), http.StatusOK)
	require.True(t, dry.DryRun)
	want := map[string]string{"Service/ledger": api.ActionUpdated, "ResiliencePolicy/payments": api.ActionUnchanged, "ResiliencePolicy/ledger": api.ActionDeleted}
	require.Equal(t, want, actions(dry.Items))
	_, err = h.store.Get(ctx, policies.KindPolicy, "ledger")
	require.NoError(t, err, "a dry run writes nothing")

	real := decode[api.ApplyResult](t, c.post("/v1/apply?source=ci&prune=true", "application/yaml", edited), http.StatusOK)
	require.Equal(t, want, actions(real.Items))
	require.Greater(t, real.Revision, res.Revision)
	_, err = h.store.Get(ctx, policies.KindPolicy, "ledger")
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = h.store.Get(ctx, policies.KindService, "payments")
	require.NoError(t, err, "prune deletes only what its source applied")

	p := problem(t, c.post("/v1/apply?prune=true", "application/yaml", edited), http.StatusBadRequest)
	require.True(t, hasViolation(p, "source"))
	problem(t, c.post("/v1/apply?dryRun=maybe", "application/yaml", edited), http.StatusBadRequest)

	// An invalid resource fails the whole bundle.
	broken := ledgerService + "---\n" + strings.Replace(ledgerPolicy, "attempts: 3", "attempts: -1", 1)
	p = problem(t, c.post("/v1/apply?source=ci", "application/yaml", broken), http.StatusBadRequest)
	require.NotEmpty(t, p.Violations)
	require.True(t, strings.HasPrefix(p.Violations[0].Field, "items[1]"), "%+v", p.Violations)
	_, err = h.store.Get(ctx, policies.KindPolicy, "ledger")
	require.ErrorIs(t, err, store.ErrNotFound, "all or nothing")
}
