package apply_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// running starts an applier's view and stops it with the test.
func running(t *testing.T, a *apply.Applier) *apply.Applier {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return a
}

// Two replicas (two appliers, each with its own view and locks, over one
// etcd) writing two conflicting policies at the same time: one is stored,
// the other refused, every time. Only the guard in the transaction can
// tell them apart: they share no lock.
func TestConflictingWritesOfTwoReplicas(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	replicas := []*apply.Applier{
		running(t, apply.New(e.st, policies.ValidateOptions{})),
		running(t, apply.New(e.st, policies.ValidateOptions{})),
	}
	_, err := replicas[0].Put(ctx, decode(t, serviceYAML("payments", "9001")), 0, "test")
	require.NoError(t, err)
	for trial := range 15 {
		names := []string{fmt.Sprintf("a-%d", trial), fmt.Sprintf("b-%d", trial)}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, errs[i] = replicas[i].Put(ctx, decode(t, policyYAML(names[i], "payments", fmt.Sprintf("%ds", i+1))), 0, "test")
			}()
		}
		close(start)
		wg.Wait()
		var stored []string
		for i, err := range errs {
			var pc *apply.PolicyConflictError
			switch {
			case err == nil:
				stored = append(stored, names[i])
			case errors.As(err, &pc):
			default:
				t.Fatalf("trial %d: %s: %v", trial, names[i], err)
			}
		}
		require.Len(t, stored, 1, "trial %d: %v", trial, errs)
		ps, _, err := e.st.List(ctx, policies.KindPolicy)
		require.NoError(t, err)
		require.Len(t, ps, 1)
		_, err = replicas[trial%2].Delete(ctx, policies.KindPolicy, stored[0], 0, "test")
		require.NoError(t, err)
	}
}

// get → edit → apply is safe: a revision in the file makes that resource's
// write a compare-and-swap (the conflict names it, nothing is written); the
// file's metadata.source is kept, else the stored one; a bundle that
// changes nothing answers "unchanged" for each resource and writes nothing.
func TestApplyHonoursRevisionAndSource(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	a := running(t, e.a)
	first, err := a.Apply(ctx, apply.Request{Resources: decodeAll(t, serviceYAML("payments", "9001")+"---\n"+policyYAML("payments", "payments", "3s"))})
	require.NoError(t, err)
	policyRev := first.Revision
	second, err := a.Put(ctx, decode(t, policyYAML("payments", "payments", "4s")), 0, "test")
	require.NoError(t, err)

	// A file read at the first revision, edited, applied: refused.
	stale := policyYAML("payments", "payments", "5s")
	stale = replaceOnce(stale, "metadata: {name: payments}", fmt.Sprintf("metadata: {name: payments, revision: %d}", policyRev))
	_, err = a.Apply(ctx, apply.Request{Resources: decodeAll(t, serviceYAML("payments", "9002")+"---\n"+stale)})
	var ce *store.ConflictError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "payments", ce.Name)
	require.Equal(t, policies.KindPolicy, ce.Kind)
	require.Equal(t, policyRev, ce.Expected)
	require.Equal(t, second.Revision, ce.Actual)
	svc, err := e.st.Get(ctx, policies.KindService, "payments")
	require.NoError(t, err)
	require.Equal(t, 9001, svc.(*policies.Service).Spec.Endpoints[0].Port, "all or nothing: the service was not written either")

	// With the current revision and a source of its own: applied, source kept.
	current := replaceOnce(policyYAML("payments", "payments", "5s"), "metadata: {name: payments}",
		fmt.Sprintf("metadata: {name: payments, revision: %d, source: team-payments}", second.Revision))
	res, err := a.Apply(ctx, apply.Request{Resources: decodeAll(t, current)})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"ResiliencePolicy/payments": api.ActionUpdated}, actions(res.Items))
	stored, err := e.st.Get(ctx, policies.KindPolicy, "payments")
	require.NoError(t, err)
	require.Equal(t, "team-payments", stored.GetMeta().Source)

	// Applied again as read back (revision and source in the file), and
	// once more without them: unchanged, nothing written, the source stays.
	rev, err := e.st.Revision(ctx)
	require.NoError(t, err)
	for _, doc := range []string{
		replaceOnce(policyYAML("payments", "payments", "5s"), "metadata: {name: payments}",
			fmt.Sprintf("metadata: {name: payments, revision: %d, source: team-payments}", stored.GetMeta().Revision)),
		policyYAML("payments", "payments", "5s"),
	} {
		res, err = a.Apply(ctx, apply.Request{Resources: decodeAll(t, serviceYAML("payments", "9001")+"---\n"+doc)})
		require.NoError(t, err)
		require.Equal(t, map[string]string{"Service/payments": api.ActionUnchanged, "ResiliencePolicy/payments": api.ActionUnchanged}, actions(res.Items))
	}
	after, err := e.st.Revision(ctx)
	require.NoError(t, err)
	require.Equal(t, rev, after, "an unchanged bundle writes nothing")
	stored, err = e.st.Get(ctx, policies.KindPolicy, "payments")
	require.NoError(t, err)
	require.Equal(t, "team-payments", stored.GetMeta().Source)
}

// What a directory sync owns is refused to every other writer, with the
// owner and how to override; the sync itself, and a forced write, go
// through (and the source stays the sync's, so the sync still prunes it).
func TestWritesToWhatASyncOwns(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	a := running(t, e.a)
	const sync = "dir:/srv/policies"
	_, err := a.Apply(ctx, apply.Request{Source: sync, Prune: true, Resources: decodeAll(t, serviceYAML("payments", "9001")+"---\n"+policyYAML("payments", "payments", "3s"))})
	require.NoError(t, err)

	var own *apply.OwnedError
	_, err = a.Put(ctx, decode(t, policyYAML("payments", "payments", "4s")), 0, "alice")
	require.ErrorAs(t, err, &own)
	require.Equal(t, sync, own.Source)
	require.Contains(t, err.Error(), "ResiliencePolicy payments is owned by the directory sync dir:/srv/policies")
	require.Contains(t, err.Error(), "force=true")
	_, err = a.Delete(ctx, policies.KindPolicy, "payments", 0, "alice")
	require.ErrorAs(t, err, &own)
	_, err = a.Apply(ctx, apply.Request{Source: "ci", Resources: decodeAll(t, policyYAML("payments", "payments", "4s"))})
	require.ErrorAs(t, err, &own)
	// Unchanged content is no change: nothing to refuse.
	res, err := a.Apply(ctx, apply.Request{Resources: decodeAll(t, policyYAML("payments", "payments", "3s"))})
	require.NoError(t, err)
	require.Equal(t, api.ActionUnchanged, res.Items[0].Action)

	// The sync itself, then a forced write.
	_, err = a.Apply(ctx, apply.Request{Source: sync, Resources: decodeAll(t, policyYAML("payments", "payments", "5s"))})
	require.NoError(t, err)
	w, err := a.Put(apply.WithForce(ctx), decode(t, policyYAML("payments", "payments", "6s")), 0, "alice")
	require.NoError(t, err)
	require.Equal(t, api.ActionUpdated, w.Action)
	require.Equal(t, sync, w.Resource.GetMeta().Source, "a forced write leaves the resource to its sync")
	_, err = a.Delete(apply.WithForce(ctx), policies.KindPolicy, "payments", 0, "alice")
	require.NoError(t, err)
}

func replaceOnce(s, old, new string) string {
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + new + s[i+len(old):]
		}
	}
	panic("no " + old)
}
