package gitops_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/controlplane/gitops"
	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

// Run is a goroutine, and so are the store's and etcd's; every test must
// stop them all.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitFor = 10 * time.Second

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// env is a directory synced through a real applier into a store over a real
// embedded etcd.
type env struct {
	dir     string // absolute
	source  string
	cli     *clientv3.Client
	st      *store.Store
	applier *apply.Applier
	metrics *metrics.Metrics
	sync    *gitops.Sync
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := storetest.NewServer(t)
	cli := storetest.NewClient(t, srv)
	st := store.New(cli, store.Options{Logger: discard, MaxTxnOps: srv.MaxTxnOps()})
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	dir, err := filepath.Abs(t.TempDir())
	require.NoError(t, err)
	return &env{dir: dir, source: "dir:" + dir, cli: cli, st: st, applier: apply.New(st, policies.ValidateOptions{}), metrics: metrics.New()}
}

// revision is the store's current revision; the builder's stands in for it
// in production.
func (e *env) revision() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := e.cli.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		return 0
	}
	return resp.Header.Revision
}

// start runs the sync until the test ends, and waits for it to return.
func (e *env) start(t *testing.T) {
	t.Helper()
	s, err := gitops.New(gitops.Config{Dir: e.dir, Applier: e.applier, Revision: e.revision, Metrics: e.metrics, Log: discard, Resync: 100 * time.Millisecond})
	require.NoError(t, err)
	e.sync = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

func (e *env) write(t *testing.T, name, content string) {
	t.Helper()
	p := filepath.Join(e.dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
}

func (e *env) remove(t *testing.T, name string) {
	t.Helper()
	require.NoError(t, os.Remove(filepath.Join(e.dir, name)))
}

// gauge reads a gauge from the replica's registry.
func (e *env) gauge(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := e.metrics.Registry.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			require.Len(t, mf.GetMetric(), 1)
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func (e *env) counter(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := e.metrics.Registry.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			require.Len(t, mf.GetMetric(), 1)
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// waitStatus waits until the sync's status satisfies cond.
func (e *env) waitStatus(t *testing.T, what string, cond func(ok bool, errText string) bool) {
	t.Helper()
	require.Eventually(t, func() bool {
		st := e.sync.Status()
		return cond(st.OK, st.Error)
	}, waitFor, 20*time.Millisecond, "%s; status: %+v", what, e.sync.Status())
}

func (e *env) waitOK(t *testing.T) {
	t.Helper()
	e.waitStatus(t, "sync never succeeded", func(ok bool, _ string) bool { return ok })
}

func (e *env) get(t *testing.T, kind, name string) (policies.Resource, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return e.st.Get(ctx, kind, name)
}

func serviceYAML(name string, port int) string {
	return fmt.Sprintf(`apiVersion: bulwark/v1
kind: Service
metadata: {name: %s}
spec:
  protocol: grpc
  port: 50051
  endpoints: [{address: 127.0.0.1, port: %d}]
`, name, port)
}

func policyYAML(name, target string) string {
	return fmt.Sprintf(`apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: %s}
spec:
  target: {service: %s}
  timeouts: {request: 3s}
`, name, target)
}

func portOf(t *testing.T, r policies.Resource) int {
	t.Helper()
	return r.(*policies.Service).Spec.Endpoints[0].Port
}

// New refuses what is not a directory.
func TestNewRefusesWhatIsNotADirectory(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file.yaml")
	require.NoError(t, os.WriteFile(file, []byte("x: 1\n"), 0o644))
	for _, p := range []string{filepath.Join(dir, "missing"), file} {
		_, err := gitops.New(gitops.Config{Dir: p, Revision: func() int64 { return 0 }, Metrics: metrics.New(), Log: discard})
		require.ErrorContains(t, err, "is not a directory", p)
	}
}

// The directory's policy files (not others, not hidden directories) reach
// the store under the source "dir:<absolute path>", and the status and the
// gauge say so.
func TestSyncAppliesTheDirectory(t *testing.T) {
	e := newEnv(t)
	e.write(t, "services/payments.yaml", serviceYAML("payments", 9001))
	e.write(t, "policies/payments.yml", policyYAML("payments", "payments"))
	e.write(t, "ledger.json", `{"apiVersion": "bulwark/v1", "kind": "Service", "metadata": {"name": "ledger"}, "spec": {"port": 8080, "endpoints": [{"address": "127.0.0.1", "port": 9002}]}}`)
	e.write(t, "README.md", "not a policy file: {")
	e.write(t, ".git/config.yaml", "hidden directories are skipped: {")
	e.start(t)
	e.waitOK(t)

	st := e.sync.Status()
	require.Equal(t, e.dir, st.Dir)
	require.Equal(t, e.source, st.Source)
	require.Empty(t, st.Error)
	require.Positive(t, st.Revision)
	require.Len(t, st.Items, 3)
	for _, k := range []struct{ kind, name string }{
		{policies.KindService, "payments"},
		{policies.KindPolicy, "payments"},
		{policies.KindService, "ledger"},
	} {
		r, err := e.get(t, k.kind, k.name)
		require.NoError(t, err, "%s %s", k.kind, k.name)
		require.Equal(t, e.source, r.GetMeta().Source)
	}
	require.Equal(t, 1.0, e.gauge(t, "bulwark_sync_ok"))
	require.Zero(t, e.counter(t, "bulwark_sync_failures_total"))

	// An edit reaches the store.
	e.write(t, "services/payments.yaml", serviceYAML("payments", 9003))
	require.Eventually(t, func() bool {
		r, err := e.get(t, policies.KindService, "payments")
		return err == nil && portOf(t, r) == 9003
	}, waitFor, 20*time.Millisecond)
}

// A broken file next to a valid edit changes nothing: the status names the
// file, the gauge drops to 0; once the file is fixed, the edit that waited
// goes through.
func TestSyncBrokenFileChangesNothingAndRecovers(t *testing.T) {
	e := newEnv(t)
	e.write(t, "services/payments.yaml", serviceYAML("payments", 9001))
	e.write(t, "policies/payments.yaml", policyYAML("payments", "payments"))
	e.start(t)
	e.waitOK(t)

	for i, tc := range []struct {
		name, file, content, want string
	}{
		{"unknown field", "policies/broken.yaml", policyYAML("broken", "payments") + "  retries: {atempts: 2}\n",
			"policies/broken.yaml: document 0 (ResiliencePolicy broken): spec.retries.atempts: unknown field"},
		{"malformed YAML", "policies/broken.yaml", "kind: [\n", "policies/broken.yaml"},
		{"invalid value", "policies/broken.yaml", strings.Replace(policyYAML("broken", "payments"), "3s", "-3s", 1), "policies/broken.yaml"},
		{"duplicate across files", "policies/dup.yaml", policyYAML("payments", "payments"), "is already declared in policies/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			good, err := e.get(t, policies.KindService, "payments")
			require.NoError(t, err)
			_, goodRev, _, err := e.st.Load(t.Context())
			require.NoError(t, err)
			failures := e.counter(t, "bulwark_sync_failures_total")

			e.write(t, tc.file, tc.content)
			// A valid edit next to the broken file must wait for it.
			edited := 9100 + i
			e.write(t, "services/payments.yaml", serviceYAML("payments", edited))
			e.waitStatus(t, "the broken file is not reported", func(ok bool, errText string) bool {
				return !ok && strings.Contains(errText, tc.want)
			})
			require.Zero(t, e.gauge(t, "bulwark_sync_ok"))
			require.Greater(t, e.counter(t, "bulwark_sync_failures_total"), failures)
			r, err := e.get(t, policies.KindService, "payments")
			require.NoError(t, err)
			require.Equal(t, good.GetMeta().Revision, r.GetMeta().Revision, "nothing was written")
			require.Equal(t, portOf(t, good), portOf(t, r))
			_, rev, _, err := e.st.Load(t.Context())
			require.NoError(t, err)
			require.Equal(t, goodRev, rev, "the store did not move")

			// The fix: the edit that waited goes through.
			e.remove(t, tc.file)
			e.waitOK(t)
			r, err = e.get(t, policies.KindService, "payments")
			require.NoError(t, err)
			require.Equal(t, edited, portOf(t, r))
			require.Equal(t, 1.0, e.gauge(t, "bulwark_sync_ok"))
			_, err = e.get(t, policies.KindPolicy, "broken")
			require.ErrorIs(t, err, store.ErrNotFound)
		})
	}
}

// A removed file is pruned; an empty directory prunes nothing.
func TestSyncPrunesButRefusesAnEmptyDirectory(t *testing.T) {
	e := newEnv(t)
	e.write(t, "payments.yaml", serviceYAML("payments", 9001)+"---\n"+policyYAML("payments", "payments"))
	e.write(t, "ledger.yaml", serviceYAML("ledger", 9002))
	e.start(t)
	e.waitOK(t)
	_, err := e.get(t, policies.KindService, "ledger")
	require.NoError(t, err)

	e.remove(t, "ledger.yaml")
	require.Eventually(t, func() bool {
		_, err := e.get(t, policies.KindService, "ledger")
		return err != nil
	}, waitFor, 20*time.Millisecond)
	_, err = e.get(t, policies.KindService, "ledger")
	require.ErrorIs(t, err, store.ErrNotFound)
	e.waitOK(t)

	e.remove(t, "payments.yaml")
	e.waitStatus(t, "an empty directory is not refused", func(ok bool, errText string) bool {
		return !ok && strings.Contains(errText, "holds no resources")
	})
	require.Zero(t, e.gauge(t, "bulwark_sync_ok"))
	for _, kind := range []string{policies.KindService, policies.KindPolicy} {
		_, err := e.get(t, kind, "payments")
		require.NoError(t, err, "%s payments must not be pruned", kind)
	}
}

// Drift: an edit made outside the directory to a resource it declares (the
// applier refuses it unless forced) is reverted; a resource of another
// source is left alone.
func TestSyncRevertsDrift(t *testing.T) {
	e := newEnv(t)
	e.write(t, "payments.yaml", serviceYAML("payments", 9001))
	e.start(t)
	e.waitOK(t)

	ctx := t.Context()
	_, err := e.applier.Put(apply.WithForce(ctx), decode(t, serviceYAML("payments", 9009)), 0, "someone")
	require.NoError(t, err)
	_, err = e.applier.Put(ctx, decode(t, serviceYAML("ledger", 9002)), 0, "someone")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		r, err := e.get(t, policies.KindService, "payments")
		return err == nil && portOf(t, r) == 9001
	}, waitFor, 20*time.Millisecond, "the drift is not reverted")
	ledger, err := e.get(t, policies.KindService, "ledger")
	require.NoError(t, err, "not the directory's: not pruned")
	require.Empty(t, ledger.GetMeta().Source)
}

func decode(t *testing.T, doc string) policies.Resource {
	t.Helper()
	r, err := policies.DecodeOne([]byte(doc))
	require.NoError(t, err)
	return r
}

// A broken file that is removed again (a git revert) leaves the directory
// at its last good content: the sync recovers by itself, status and the
// bulwark_sync_ok gauge say so, with no unrelated edit needed. The same
// broken content is not applied again and again while it stays.
func TestSyncRecoversFromARevertedBrokenFile(t *testing.T) {
	e := newEnv(t)
	e.write(t, "services/payments.yaml", serviceYAML("payments", 9001))
	e.start(t)
	e.waitOK(t)

	e.write(t, "zz-broken.yaml", "kind: [\n")
	e.waitStatus(t, "the broken file is not reported", func(ok bool, errText string) bool {
		return !ok && strings.Contains(errText, "zz-broken.yaml")
	})
	require.Zero(t, e.gauge(t, "bulwark_sync_ok"))
	e.remove(t, "zz-broken.yaml")
	e.waitOK(t)
	require.Equal(t, 1.0, e.gauge(t, "bulwark_sync_ok"))
}
