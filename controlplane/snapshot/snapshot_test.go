package snapshot_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/controlplane/snapshot"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver/seal"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/storetest"
	"github.com/bulwarkmesh/bulwark/xds/ir"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// The loader follows the store's watch from goroutines and leases adopted
// experiments from others; every test must stop them all.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitFor = 10 * time.Second

var checkout = xdsserver.GroupKey{Flavor: ir.FlavorEnvoy, Service: "checkout", Outbound: xdsserver.DefaultOutbound}

// env is a loader and a builder over a store over a real embedded etcd,
// publishing into a real xDS cache.
type env struct {
	cli     *clientv3.Client
	st      *store.Store
	cache   *xdsserver.Cache
	metrics *metrics.Metrics
	builder *snapshot.Builder
}

// start runs the loader until the test ends, and waits for it to return.
func start(t *testing.T) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := storetest.NewServer(t)
	cli := storetest.NewClient(t, srv)
	st := store.New(cli, store.Options{Logger: log, MaxTxnOps: srv.MaxTxnOps()})
	t.Cleanup(func() { require.NoError(t, st.Close()) })

	m := metrics.New(xdsserver.TypeLabels()...)
	cache := xdsserver.NewCache()
	b := snapshot.NewBuilder(log, cache, xdsserver.NewTracker("test", cache, m), m)
	l := snapshot.NewLoader(snapshot.LoaderConfig{
		Log: log, Store: st, Builder: b, Validate: policies.ValidateOptions{},
		Debounce: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, b.Built, waitFor, 10*time.Millisecond, "no first build")
	b.Ensure(ctx, checkout)
	return &env{cli: cli, st: st, cache: cache, metrics: m, builder: b}
}

func (e *env) put(t *testing.T, doc string) int64 {
	t.Helper()
	r, err := policies.DecodeOne([]byte(doc))
	require.NoError(t, err)
	require.Empty(t, policies.Validate(r, policies.ValidateOptions{}), "test input must validate")
	rev, err := e.st.Put(t.Context(), r, 0)
	require.NoError(t, err)
	return rev
}

// rawPut writes a value straight into etcd, past every validation.
func (e *env) rawPut(t *testing.T, key, value string) {
	t.Helper()
	_, err := e.cli.Put(t.Context(), store.DefaultPrefix+key, value)
	require.NoError(t, err)
}

// timeoutTo returns the request timeout of the default route to service in
// a group's published route configuration; ok is false when there is none.
func timeoutTo(res *translate.Resources, service string) (d time.Duration, ok bool) {
	if res == nil {
		return 0, false
	}
	for _, rc := range res.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			if vh.GetName() != service {
				continue
			}
			for _, r := range vh.GetRoutes() {
				if r.GetMatch().GetPrefix() == "/" && r.GetRoute().GetTimeout() != nil {
					return r.GetRoute().GetTimeout().AsDuration(), true
				}
			}
		}
	}
	return 0, false
}

// waitTimeout waits until the checkout group's published route to service
// has the timeout want.
func (e *env) waitTimeout(t *testing.T, service string, want time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		d, ok := timeoutTo(e.builder.Published(checkout.String()), service)
		return ok && d == want
	}, waitFor, 10*time.Millisecond, "the route to %s never got the timeout %s", service, want)
}

func (e *env) snapshot(t *testing.T) cachev3.ResourceSnapshot {
	t.Helper()
	snap, err := e.cache.GetSnapshot(checkout.String())
	require.NoError(t, err)
	return snap
}

func versions(snap cachev3.ResourceSnapshot) map[string]string {
	out := map[string]string{}
	for _, typ := range seal.TypeURLs {
		out[typ] = snap.GetVersion(typ)
	}
	return out
}

func (e *env) counter(t *testing.T, name, label, value string) float64 {
	t.Helper()
	mfs, err := e.metrics.Registry.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no metric %s{%s=%q}", name, label, value)
	return 0
}

func hasProblem(ps []api.BuildProblem, substr string) bool {
	for _, p := range ps {
		if strings.Contains(p.Message, substr) {
			return true
		}
	}
	return false
}

const (
	paymentsService = `apiVersion: bulwark/v1
kind: Service
metadata: {name: payments}
spec:
  protocol: http
  port: 8080
  endpoints: [{address: 127.0.0.1, port: 9001}]
`
	ledgerService = `apiVersion: bulwark/v1
kind: Service
metadata: {name: ledger}
spec:
  protocol: http
  port: 8080
  endpoints: [{address: 127.0.0.1, port: 9002}]
`
)

func policyYAML(name, target, timeout string) string {
	return `apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: ` + name + `}
spec:
  target: {service: ` + target + `}
  timeouts: {request: ` + timeout + `}
`
}

// A Service and a policy written to the store reach the group's published
// snapshot, in the builder and in the xDS cache; a later edit follows.
func TestStoreChangesArePublished(t *testing.T) {
	e := start(t)
	e.put(t, paymentsService)
	rev := e.put(t, policyYAML("payments", "payments", "3s"))
	e.waitTimeout(t, "payments", 3*time.Second)
	require.GreaterOrEqual(t, e.builder.Revision(), rev)
	require.Empty(t, e.builder.Problems())

	snap := e.snapshot(t)
	for typ, v := range versions(snap) {
		require.NotEmpty(t, v, typ)
	}
	require.Contains(t, snap.GetResources(resourcev3.RouteType), "outbound", "the Envoy route configuration is in the cache")

	set, setRev := e.builder.Set()
	require.NotNil(t, set.Services["payments"])
	require.NotNil(t, set.Policies["payments"])
	require.GreaterOrEqual(t, setRev, rev)

	before := versions(snap)
	e.put(t, policyYAML("payments", "payments", "1500ms"))
	e.waitTimeout(t, "payments", 1500*time.Millisecond)
	after := versions(e.snapshot(t))
	require.NotEqual(t, before[resourcev3.RouteType], after[resourcev3.RouteType], "the routes changed: a new version")
}

// Values written straight into etcd that do not decode or validate show in
// Problems and leave the rest of the build alone; an invalid update of a
// resource keeps its last valid version; removing them clears the problems.
func TestInvalidStoredValuesAreProblemsNotFailures(t *testing.T) {
	e := start(t)
	e.put(t, paymentsService)
	e.put(t, policyYAML("payments", "payments", "3s"))
	e.waitTimeout(t, "payments", 3*time.Second)

	e.rawPut(t, "/v1/policies/bad", `{"apiVersion":"bulwark/v1","kind":"ResiliencePolicy","metadata":{"name":"bad"},"spec":{"target":{"service":"payments"},"retries":{"attempts":-1}}}`)
	e.rawPut(t, "/v1/policies/garbage", `{not json`)
	// An invalid update of a valid policy: its last valid version stays.
	e.rawPut(t, "/v1/policies/payments", `{"apiVersion":"bulwark/v1","kind":"ResiliencePolicy","metadata":{"name":"payments"},"spec":{"target":{"service":"payments"},"timeouts":{"request":"-1s"}}}`)
	// And a valid change next to them still goes through.
	e.put(t, ledgerService)
	e.put(t, policyYAML("ledger", "ledger", "2s"))

	e.waitTimeout(t, "ledger", 2*time.Second)
	require.Eventually(t, func() bool {
		ps := e.builder.Problems()
		return hasProblem(ps, "ResiliencePolicy bad left out") && hasProblem(ps, "/v1/policies/garbage") && hasProblem(ps, "ResiliencePolicy payments left out")
	}, waitFor, 10*time.Millisecond, "problems: %+v", e.builder.Problems())
	d, ok := timeoutTo(e.builder.Published(checkout.String()), "payments")
	require.True(t, ok)
	require.Equal(t, 3*time.Second, d, "the last valid version of the policy stays in force")
	set, _ := e.builder.Set()
	require.NotContains(t, set.Policies, "bad")
	require.NotContains(t, set.Policies, "garbage")

	// Valid again, and the invalid ones gone: no problems left.
	e.put(t, policyYAML("payments", "payments", "4s"))
	for _, name := range []string{"bad", "garbage"} {
		_, err := e.cli.Delete(t.Context(), store.DefaultPrefix+"/v1/policies/"+name)
		require.NoError(t, err)
	}
	e.waitTimeout(t, "payments", 4*time.Second)
	require.Eventually(t, func() bool {
		ps := e.builder.Problems()
		return !hasProblem(ps, "ResiliencePolicy bad") && !hasProblem(ps, "ResiliencePolicy payments")
	}, waitFor, 10*time.Millisecond, "problems: %+v", e.builder.Problems())
}

// A build whose content did not change publishes nothing new: the cache
// keeps the same snapshot and versions, and the build is counted as
// unchanged.
func TestUnchangedContentPublishesNothingNew(t *testing.T) {
	e := start(t)
	e.put(t, paymentsService)
	e.put(t, policyYAML("payments", "payments", "3s"))
	e.waitTimeout(t, "payments", 3*time.Second)
	snap := e.snapshot(t)
	before := versions(snap)
	unchanged := e.counter(t, "bulwark_snapshots_published_total", "changed", "false")

	// The same policy written again: a new store revision, the same content.
	rev := e.put(t, policyYAML("payments", "payments", "3s"))
	require.Eventually(t, func() bool { return e.builder.Revision() >= rev }, waitFor, 10*time.Millisecond, "the rewrite was never built")
	require.Eventually(t, func() bool {
		return e.counter(t, "bulwark_snapshots_published_total", "changed", "false") > unchanged
	}, waitFor, 10*time.Millisecond, "the rebuild was not counted as unchanged")

	require.Equal(t, before, versions(e.snapshot(t)))
	require.Same(t, snap, e.snapshot(t), "nothing new was handed to the cache")
}

// A group ensured before the store was read gets its snapshot from the
// first build.
func TestGroupEnsuredBeforeTheFirstBuild(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := storetest.NewServer(t)
	cli := storetest.NewClient(t, srv)
	st := store.New(cli, store.Options{Logger: log, MaxTxnOps: srv.MaxTxnOps()})
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	r, err := policies.DecodeOne([]byte(paymentsService))
	require.NoError(t, err)
	_, err = st.Put(t.Context(), r, 0)
	require.NoError(t, err)

	m := metrics.New(xdsserver.TypeLabels()...)
	cache := xdsserver.NewCache()
	b := snapshot.NewBuilder(log, cache, xdsserver.NewTracker("test", cache, m), m)
	ctx, cancel := context.WithCancel(context.Background())
	b.Ensure(ctx, checkout)
	require.Nil(t, b.Published(checkout.String()), "nothing to build from yet")

	l := snapshot.NewLoader(snapshot.LoaderConfig{Log: log, Store: st, Builder: b, Debounce: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool {
		res := b.Published(checkout.String())
		if res == nil {
			return false
		}
		_, err := cache.GetSnapshot(checkout.String())
		return err == nil
	}, waitFor, 10*time.Millisecond)
	require.True(t, b.Built())
}

// A bad value written straight into etcd shows in Problems at once, with
// no other write after it, and its deletion clears it the same way.
func TestBadStoredValueShowsWithoutAnotherWrite(t *testing.T) {
	e := start(t)
	e.put(t, paymentsService)
	e.put(t, policyYAML("payments", "payments", "3s"))
	e.waitTimeout(t, "payments", 3*time.Second)

	e.rawPut(t, "/v1/policies/garbage", `{not json`)
	require.Eventually(t, func() bool { return hasProblem(e.builder.Problems(), "/v1/policies/garbage") },
		waitFor, 10*time.Millisecond, "problems: %+v", e.builder.Problems())
	e.rawPut(t, "/v1/policies/bad", `{"apiVersion":"bulwark/v1","kind":"ResiliencePolicy","metadata":{"name":"bad"},"spec":{"target":{"service":"payments"},"retries":{"attempts":-1}}}`)
	require.Eventually(t, func() bool { return hasProblem(e.builder.Problems(), "ResiliencePolicy bad left out") },
		waitFor, 10*time.Millisecond, "problems: %+v", e.builder.Problems())

	_, err := e.cli.Delete(t.Context(), store.DefaultPrefix+"/v1/policies/garbage")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !hasProblem(e.builder.Problems(), "/v1/policies/garbage") },
		waitFor, 10*time.Millisecond, "problems: %+v", e.builder.Problems())
	require.True(t, hasProblem(e.builder.Problems(), "ResiliencePolicy bad left out"))
}
