package apply_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

// The store and the embedded etcd start goroutines; every test must leave
// none behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is an applier over a store over a real embedded etcd.
type env struct {
	st *store.Store
	a  *apply.Applier
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := storetest.NewServer(t)
	cli := storetest.NewClient(t, srv)
	st := store.New(cli, store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxTxnOps: srv.MaxTxnOps()})
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return &env{st: st, a: apply.New(st, policies.ValidateOptions{})}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func decode(t *testing.T, doc string) policies.Resource {
	t.Helper()
	r, err := policies.DecodeOne([]byte(doc))
	require.NoError(t, err)
	return r
}

func decodeAll(t *testing.T, bundle string) []policies.Resource {
	t.Helper()
	rs, err := policies.DecodeAll([]byte(bundle))
	require.NoError(t, err)
	return rs
}

func serviceYAML(name, port string) string {
	return `apiVersion: bulwark/v1
kind: Service
metadata: {name: ` + name + `}
spec:
  protocol: http
  port: 8080
  endpoints: [{address: 127.0.0.1, port: ` + port + `}]
`
}

func policyYAML(name, target, timeout string) string {
	return `apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: ` + name + `}
spec:
  target: {service: "` + target + `"}
  timeouts: {request: ` + timeout + `}
`
}

// brokenPolicy has two invalid fields.
const brokenPolicy = `apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: broken}
spec:
  target: {service: payments}
  retries: {attempts: -1, backoff: {base: 1s, max: 10ms}}
`

func actions(items []api.ApplyItem) map[string]string {
	out := map[string]string{}
	for _, it := range items {
		out[it.Kind+"/"+it.Name] = it.Action
	}
	return out
}

// A Put creates, then updates on a different spec, and leaves an identical
// resource unchanged (same revision, nothing written).
func TestPutCreatesUpdatesAndLeavesUnchanged(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)

	var lastRev int64
	for _, tc := range []struct {
		name, doc, action string
		written           bool
	}{
		{"create", serviceYAML("payments", "9001"), api.ActionCreated, true},
		{"same spec", serviceYAML("payments", "9001"), api.ActionUnchanged, false},
		{"new spec", serviceYAML("payments", "9002"), api.ActionUpdated, true},
		{"same spec again", serviceYAML("payments", "9002"), api.ActionUnchanged, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.a.Put(ctx, decode(t, tc.doc), 0, "test")
			require.NoError(t, err)
			require.Equal(t, tc.action, res.Action)
			require.Equal(t, policies.KindService, res.Kind)
			require.Equal(t, "payments", res.Name)
			require.NotNil(t, res.Warnings, "answers always carry a warnings list")
			if tc.written {
				require.Greater(t, res.Revision, lastRev)
			} else {
				require.Equal(t, lastRev, res.Revision, "nothing written: the stored revision")
			}
			stored, err := e.st.Get(ctx, policies.KindService, "payments")
			require.NoError(t, err)
			require.Equal(t, res.Revision, stored.GetMeta().Revision)
			require.Equal(t, res.Revision, res.Resource.GetMeta().Revision)
			lastRev = res.Revision
		})
	}
	stored, err := e.st.Get(ctx, policies.KindService, "payments")
	require.NoError(t, err)
	require.Equal(t, 9002, stored.(*policies.Service).Spec.Endpoints[0].Port)
}

// A Put with an expected revision is a compare-and-swap: a stale or absent
// revision is a *store.ConflictError carrying the revision found, and
// nothing is written.
func TestPutCompareAndSwap(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	first, err := e.a.Put(ctx, decode(t, serviceYAML("payments", "9001")), 0, "test")
	require.NoError(t, err)
	second, err := e.a.Put(ctx, decode(t, serviceYAML("payments", "9002")), first.Revision, "test")
	require.NoError(t, err, "the current revision matches")
	require.Equal(t, api.ActionUpdated, second.Action)

	for _, tc := range []struct {
		name      string
		svc       string
		expect    int64
		wantFound int64
	}{
		{"stale revision", "payments", first.Revision, second.Revision},
		{"revision of a missing resource", "ledger", first.Revision, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.a.Put(ctx, decode(t, serviceYAML(tc.svc, "9003")), tc.expect, "test")
			var ce *store.ConflictError
			require.ErrorAs(t, err, &ce)
			require.ErrorIs(t, err, store.ErrConflict)
			require.Equal(t, policies.KindService, ce.Kind)
			require.Equal(t, tc.svc, ce.Name)
			require.Equal(t, tc.expect, ce.Expected)
			require.Equal(t, tc.wantFound, ce.Actual)
		})
	}
	stored, err := e.st.Get(ctx, policies.KindService, "payments")
	require.NoError(t, err)
	require.Equal(t, second.Revision, stored.GetMeta().Revision, "a failed swap writes nothing")
	_, err = e.st.Get(ctx, policies.KindService, "ledger")
	require.ErrorIs(t, err, store.ErrNotFound)
}

// A Put that would make two policies of equal specificity set the same
// field is refused with both policies named; one that sets another field,
// or a more specific target, goes through.
func TestPutRefusesNewConflictOfEqualSpecificity(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	for _, doc := range []string{serviceYAML("payments", "9001"), policyYAML("payments-a", "payments", "3s")} {
		_, err := e.a.Put(ctx, decode(t, doc), 0, "test")
		require.NoError(t, err)
	}

	_, err := e.a.Put(ctx, decode(t, policyYAML("payments-b", "payments", "2s")), 0, "test")
	var pc *apply.PolicyConflictError
	require.ErrorAs(t, err, &pc)
	require.NotEmpty(t, pc.Conflicts)
	c := pc.Conflicts[0]
	require.Equal(t, "payments", c.Service)
	require.Equal(t, "timeouts.request", c.Field)
	require.ElementsMatch(t, []string{"payments-a", "payments-b"}, c.Policies)
	require.Contains(t, err.Error(), "payments-a")
	require.Contains(t, err.Error(), "payments-b")
	_, err = e.st.Get(ctx, policies.KindPolicy, "payments-b")
	require.ErrorIs(t, err, store.ErrNotFound, "a refused write writes nothing")

	// The mesh default is less specific: no conflict.
	_, err = e.a.Put(ctx, decode(t, policyYAML("mesh-default", "*", "5s")), 0, "test")
	require.NoError(t, err)
}

// An invalid resource is refused with its violations, unprefixed.
func TestPutInvalid(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	_, err := e.a.Put(ctx, decode(t, brokenPolicy), 0, "test")
	var inv *apply.InvalidError
	require.ErrorAs(t, err, &inv)
	require.NotEmpty(t, inv.Violations)
	for _, v := range inv.Violations {
		require.True(t, strings.HasPrefix(v.Field, "spec."), "%+v", v)
	}
	_, err = e.st.Get(ctx, policies.KindPolicy, "broken")
	require.ErrorIs(t, err, store.ErrNotFound)
}

// A bundle is all or nothing: any invalid resource, duplicate or new
// conflict fails it whole, and nothing is written. Violations name their
// item.
func TestApplyIsAllOrNothing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bundle string
		// items are the indexes the violations must name; none for a conflict.
		items    []string
		conflict bool
	}{
		{
			name:   "one invalid resource",
			bundle: serviceYAML("payments", "9001") + "---\n" + brokenPolicy + "---\n" + policyYAML("ok", "payments", "3s"),
			items:  []string{"items[1]"},
		},
		{
			name:   "two invalid resources",
			bundle: brokenPolicy + "---\n" + serviceYAML("payments", "9001") + "---\n" + strings.Replace(brokenPolicy, "name: broken", "name: broken-too", 1),
			items:  []string{"items[0]", "items[2]"},
		},
		{
			name:   "a duplicate",
			bundle: serviceYAML("payments", "9001") + "---\n" + serviceYAML("payments", "9002"),
			items:  []string{"items[1]"},
		},
		{
			name:     "a new conflict",
			bundle:   serviceYAML("payments", "9001") + "---\n" + policyYAML("a", "payments", "3s") + "---\n" + policyYAML("b", "payments", "2s"),
			conflict: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := testCtx(t)
			_, before, _, err := e.st.Load(ctx)
			require.NoError(t, err)

			_, err = e.a.Apply(ctx, apply.Request{Resources: decodeAll(t, tc.bundle), Source: "ci"})
			require.Error(t, err)
			if tc.conflict {
				var pc *apply.PolicyConflictError
				require.ErrorAs(t, err, &pc)
				require.ElementsMatch(t, []string{"a", "b"}, pc.Conflicts[0].Policies)
			} else {
				var inv *apply.InvalidError
				require.ErrorAs(t, err, &inv)
				require.NotEmpty(t, inv.Violations)
				named := map[string]bool{}
				for _, v := range inv.Violations {
					item, _, ok := strings.Cut(v.Field, "]")
					require.True(t, ok, "violation without an item: %+v", v)
					item += "]"
					require.Contains(t, tc.items, item, "%+v", v)
					named[item] = true
				}
				require.Len(t, named, len(tc.items), "every invalid item is reported: %+v", inv.Violations)
			}

			set, after, _, err := e.st.Load(ctx)
			require.NoError(t, err)
			require.Empty(t, set.Resources(), "nothing written")
			require.Equal(t, before, after, "the store did not move")
		})
	}
}

// A dry run answers what an apply would do and writes nothing.
func TestApplyDryRunWritesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	_, err := e.a.Put(ctx, decode(t, serviceYAML("payments", "9001")), 0, "test")
	require.NoError(t, err)
	_, before, _, err := e.st.Load(ctx)
	require.NoError(t, err)

	bundle := serviceYAML("payments", "9002") + "---\n" + policyYAML("payments", "payments", "3s")
	res, err := e.a.Apply(ctx, apply.Request{Resources: decodeAll(t, bundle), Source: "ci", DryRun: true})
	require.NoError(t, err)
	require.True(t, res.DryRun)
	require.Equal(t, map[string]string{"Service/payments": api.ActionUpdated, "ResiliencePolicy/payments": api.ActionCreated}, actions(res.Items))
	require.Equal(t, before, res.Revision)

	_, after, _, err := e.st.Load(ctx)
	require.NoError(t, err)
	require.Equal(t, before, after)
	_, err = e.st.Get(ctx, policies.KindPolicy, "payments")
	require.ErrorIs(t, err, store.ErrNotFound)
	svc, err := e.st.Get(ctx, policies.KindService, "payments")
	require.NoError(t, err)
	require.Equal(t, 9001, svc.(*policies.Service).Spec.Endpoints[0].Port)
	require.Empty(t, svc.GetMeta().Source)
}

// Prune deletes what the same source applied before and no longer
// declares, and nothing of another source; a prune needs a source.
func TestApplyPruneDeletesOnlyItsSource(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	// Another source's resources, and one written without a source.
	_, err := e.a.Apply(ctx, apply.Request{Resources: decodeAll(t, serviceYAML("fraud", "9005")+"---\n"+policyYAML("fraud", "fraud", "1s")), Source: "other"})
	require.NoError(t, err)
	_, err = e.a.Put(ctx, decode(t, serviceYAML("payments", "9001")), 0, "test")
	require.NoError(t, err)

	full := serviceYAML("ledger", "9002") + "---\n" + policyYAML("ledger", "ledger", "2s")
	res, err := e.a.Apply(ctx, apply.Request{Resources: decodeAll(t, full), Source: "ci", Prune: true})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"Service/ledger": api.ActionCreated, "ResiliencePolicy/ledger": api.ActionCreated}, actions(res.Items))
	for _, it := range res.Items {
		require.Equal(t, res.Revision, it.Revision)
	}
	pol, err := e.st.Get(ctx, policies.KindPolicy, "ledger")
	require.NoError(t, err)
	require.Equal(t, "ci", pol.GetMeta().Source)

	// The policy is no longer declared.
	res, err = e.a.Apply(ctx, apply.Request{Resources: decodeAll(t, serviceYAML("ledger", "9002")), Source: "ci", Prune: true})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"Service/ledger": api.ActionUnchanged, "ResiliencePolicy/ledger": api.ActionDeleted}, actions(res.Items))
	_, err = e.st.Get(ctx, policies.KindPolicy, "ledger")
	require.ErrorIs(t, err, store.ErrNotFound)
	for _, k := range []struct{ kind, name string }{
		{policies.KindService, "ledger"},
		{policies.KindService, "fraud"},
		{policies.KindPolicy, "fraud"},
		{policies.KindService, "payments"},
	} {
		_, err := e.st.Get(ctx, k.kind, k.name)
		require.NoError(t, err, "%s %s is not pruned", k.kind, k.name)
	}

	// Without prune, what is no longer declared stays.
	_, err = e.a.Apply(ctx, apply.Request{Resources: decodeAll(t, serviceYAML("other-svc", "9009")), Source: "ci"})
	require.NoError(t, err)
	_, err = e.st.Get(ctx, policies.KindService, "ledger")
	require.NoError(t, err)

	_, err = e.a.Apply(ctx, apply.Request{Resources: decodeAll(t, serviceYAML("ledger", "9002")), Prune: true})
	var inv *apply.InvalidError
	require.ErrorAs(t, err, &inv)
	require.Equal(t, "source", inv.Violations[0].Field)
	_, err = e.st.Get(ctx, policies.KindService, "other-svc")
	require.NoError(t, err, "a refused prune deletes nothing")
}

// Delete removes a resource, with an optional compare-and-swap; a missing
// resource is store.ErrNotFound.
func TestDelete(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	created, err := e.a.Put(ctx, decode(t, serviceYAML("payments", "9001")), 0, "test")
	require.NoError(t, err)

	for _, tc := range []struct {
		name   string
		svc    string
		expect int64
		check  func(t *testing.T, res *api.WriteResult[policies.Resource], err error)
	}{
		{"missing", "ledger", 0, func(t *testing.T, _ *api.WriteResult[policies.Resource], err error) {
			require.ErrorIs(t, err, store.ErrNotFound)
		}},
		{"stale revision", "payments", created.Revision + 100, func(t *testing.T, _ *api.WriteResult[policies.Resource], err error) {
			var ce *store.ConflictError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, created.Revision, ce.Actual)
		}},
		{"current revision", "payments", created.Revision, func(t *testing.T, res *api.WriteResult[policies.Resource], err error) {
			require.NoError(t, err)
			require.Equal(t, api.ActionDeleted, res.Action)
			require.Greater(t, res.Revision, created.Revision)
			_, err = e.st.Get(ctx, policies.KindService, "payments")
			require.ErrorIs(t, err, store.ErrNotFound)
		}},
		{"already deleted", "payments", 0, func(t *testing.T, _ *api.WriteResult[policies.Resource], err error) {
			require.ErrorIs(t, err, store.ErrNotFound)
			require.False(t, errors.Is(err, store.ErrConflict))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := e.a.Delete(ctx, policies.KindService, tc.svc, tc.expect, "test")
			tc.check(t, res, err)
		})
	}
}
