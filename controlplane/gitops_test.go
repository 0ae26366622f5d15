package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// syncFailures reads bulwark_sync_failures_total from /metrics.
func (h *harness) syncFailures() float64 {
	h.t.Helper()
	_, body := h.get("/metrics")
	m := regexp.MustCompile(`(?m)^bulwark_sync_failures_total (\S+)$`).FindSubmatch(body)
	require.NotNil(h.t, m, "metric bulwark_sync_failures_total")
	v, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(h.t, err)
	return v
}

// The directory sync applies a directory of policy files with prune: an
// edited file reaches the store and a real gRPC xDS client; an invalid file
// changes nothing (even next to a valid edit) and is reported in status and
// metrics; a removed file is pruned; an empty directory prunes nothing; edits
// made through the API to resources the directory owns are reverted.
func TestGitOpsDirectorySync(t *testing.T) {

	dir := t.TempDir()
	a := startBackend(t, "a", nil)
	b := startBackend(t, "b", nil)
	writeFile(t, dir, "services/payments.yaml", serviceYAML("payments", a.port))
	writeFile(t, dir, "policies/payments.yaml", paymentsPolicy)
	writeFile(t, dir, "README.md", "not a policy file")
	writeFile(t, dir, ".git/config.yaml", "hidden directories are skipped: {")
	h := newHarness(t, func(c *Config) { c.SyncDir, c.SyncResync = dir, time.Second })
	ctx := context.Background()
	abs, err := filepath.Abs(dir)
	require.NoError(t, err)
	source := "dir:" + abs

	eventually(t, 10*time.Second, func() error {
		st := h.statusReport().Sync
		if st == nil || !st.OK {
			return fmt.Errorf("sync not ok: %+v", st)
		}
		return nil
	})
	pol, err := h.store.Get(ctx, policies.KindPolicy, "payments")
	require.NoError(t, err)
	require.Equal(t, source, pol.GetMeta().Source)
	client, _ := h.dial("checkout", "payments")
	eventually(t, 10*time.Second, func() error {
		host, err := call(client, time.Second, "x")
		if err != nil || host != "a" {
			return fmt.Errorf("served by %q: %v", host, err)
		}
		return nil
	})

	// An edit reaches the store and the client.
	writeFile(t, dir, "services/payments.yaml", serviceYAML("payments", b.port))
	eventually(t, 10*time.Second, func() error {
		host, err := call(client, time.Second, "x")
		if err != nil || host != "b" {
			return fmt.Errorf("served by %q: %v", host, err)
		}
		return nil
	})
	svc, err := h.store.Get(ctx, policies.KindService, "payments")
	require.NoError(t, err)
	require.Equal(t, b.port, svc.(*policies.Service).Spec.Endpoints[0].Port)
	goodRev := svc.GetMeta().Revision

	// An invalid file next to a valid edit: nothing is applied.
	failures := h.syncFailures()
	writeFile(t, dir, "policies/broken.yaml", strings.Replace(paymentsPolicy, "name: payments}", "name: broken}", 1)+"  retries: {atempts: 2}\n")
	writeFile(t, dir, "services/payments.yaml", serviceYAML("payments", a.port))
	eventually(t, 10*time.Second, func() error {
		st := h.statusReport().Sync
		if st.OK || !strings.Contains(st.Error, "policies/broken.yaml: document 0 (ResiliencePolicy broken): spec.retries.atempts: unknown field") {
			return fmt.Errorf("sync: %+v", st)
		}
		return nil
	})
	require.Greater(t, h.syncFailures(), failures)
	for range 10 {
		host, err := call(client, time.Second, "x")
		require.NoError(t, err)
		require.Equal(t, "b", host, "the last good state stays")
	}
	svc, err = h.store.Get(ctx, policies.KindService, "payments")
	require.NoError(t, err)
	require.Equal(t, goodRev, svc.GetMeta().Revision, "nothing was written")

	// Validation failures and duplicates across files are refused too, with
	// their files.
	require.NoError(t, os.Remove(filepath.Join(dir, "policies/broken.yaml")))
	writeFile(t, dir, "policies/dup.yaml", paymentsPolicy)
	eventually(t, 10*time.Second, func() error {
		st := h.statusReport().Sync
		if st.OK || !strings.Contains(st.Error, "is already declared in policies/") {
			return fmt.Errorf("sync: %+v", st)
		}
		return nil
	})
	require.NoError(t, os.Remove(filepath.Join(dir, "policies/dup.yaml")))

	// The fix goes through: the pending edit and the removal of the policy.
	require.NoError(t, os.Remove(filepath.Join(dir, "policies/payments.yaml")))
	eventually(t, 10*time.Second, func() error {
		host, err := call(client, time.Second, "x")
		if err != nil || host != "a" {
			return fmt.Errorf("served by %q: %v", host, err)
		}
		if _, err := h.store.Get(ctx, policies.KindPolicy, "payments"); err == nil {
			return fmt.Errorf("the removed policy is still stored")
		}
		return nil
	})
	_, err = h.store.Get(ctx, policies.KindPolicy, "payments")
	require.ErrorIs(t, err, store.ErrNotFound)
	st := h.statusReport().Sync
	require.True(t, st.OK, "%+v", st)
	require.Equal(t, abs, st.Dir)
	require.Equal(t, source, st.Source)

	// An edit through the API to a resource the directory owns is refused,
	// naming the directory and the override; forced, it is reverted (drift);
	// a resource of another source is left alone.
	c := h.api("")
	p := problem(t, c.putYAML("/v1/services/payments", serviceYAML("payments", b.port)), http.StatusConflict)
	require.Contains(t, p.Detail, "owned by the directory sync "+source)
	require.Contains(t, p.Detail, "force=true")
	p = problem(t, c.del("/v1/services/payments"), http.StatusConflict)
	require.Contains(t, p.Detail, "owned by the directory sync "+source)
	decode[writeReply](t, c.putYAML("/v1/services/payments?force=true", serviceYAML("payments", b.port)), http.StatusOK)
	decode[writeReply](t, c.putYAML("/v1/policies/payments", paymentsPolicy), http.StatusCreated)
	eventually(t, 10*time.Second, func() error {
		svc, err := h.store.Get(ctx, policies.KindService, "payments")
		if err != nil {
			return err
		}
		if p := svc.(*policies.Service).Spec.Endpoints[0].Port; p != a.port {
			return fmt.Errorf("endpoint port %d, want the directory's %d", p, a.port)
		}
		return nil
	})
	_, err = h.store.Get(ctx, policies.KindPolicy, "payments")
	require.NoError(t, err, "not the directory's: not pruned")

	// An empty directory prunes nothing.
	require.NoError(t, os.Remove(filepath.Join(dir, "services/payments.yaml")))
	eventually(t, 10*time.Second, func() error {
		st := h.statusReport().Sync
		if st.OK || !strings.Contains(st.Error, "holds no resources") {
			return fmt.Errorf("sync: %+v", st)
		}
		return nil
	})
	_, err = h.store.Get(ctx, policies.KindService, "payments")
	require.NoError(t, err)
	_, err = call(client, time.Second, "x")
	require.NoError(t, err)
}

// A declared experiment runs once: after it expired, or was stopped with the
// kill switch, the unchanged file does not start it again.
func TestGitOpsExperimentRunsOnce(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "mesh.yaml", serviceYAML("payments", 9001)+"---\n"+experimentYAML("payments-game-day", "payments", 10, "30m"))
	h := newHarness(t, func(c *Config) { c.SyncDir, c.SyncResync = dir, time.Second })
	c := h.api("")
	eventually(t, 10*time.Second, func() error {
		if n := len(decode[listReply](t, c.get("/v1/experiments"), http.StatusOK).Items); n != 1 {
			return fmt.Errorf("%d experiments running", n)
		}
		return nil
	})
	stopped := decode[api.KillSwitchResult](t, c.post("/v1/experiments/stop", "", ""), http.StatusOK)
	require.Equal(t, []string{"payments-game-day"}, stopped.Stopped)
	// Several sync periods (and a resync after the store changed) later, it
	// is still stopped.
	time.Sleep(3 * time.Second)
	require.Empty(t, decode[listReply](t, c.get("/v1/experiments"), http.StatusOK).Items)
	st := h.statusReport().Sync
	require.True(t, st.OK, "%+v", st)
	require.Contains(t, fmt.Sprint(st.Items), "skipped")
}
