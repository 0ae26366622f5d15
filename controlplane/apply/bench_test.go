package apply_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/controlplane/internal/meshtest"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

// seeded is a store over an embedded etcd holding meshtest.MeshSet(n): n
// services, each with a policy.
func seeded(b *testing.B, n int) *store.Store {
	b.Helper()
	srv := storetest.NewServer(b)
	cli := storetest.NewClient(b, srv)
	st := store.New(cli, store.Options{Logger: slog.New(slog.DiscardHandler), MaxTxnOps: srv.MaxTxnOps()})
	b.Cleanup(func() { st.Close() })
	rs := meshtest.MeshSet(n).Resources()
	for len(rs) > 0 {
		batch := rs[:min(len(rs), st.MaxTxnOps())]
		rs = rs[len(batch):]
		ops := make([]store.Op, len(batch))
		for i, r := range batch {
			ops[i] = store.Op{Put: r}
		}
		if _, err := st.Apply(context.Background(), ops); err != nil {
			b.Fatal(err)
		}
	}
	return st
}

var template = meshtest.MeshSet(43).Policies["svc-00042"]

// policy is svc-00042's policy with request timeout ms: each write changes it.
func policy(ms int) *policies.ResiliencePolicy {
	c := *template
	c.Spec.Timeouts = &policies.Timeouts{Connect: policies.Dur(time.Second), Request: policies.Dur(time.Duration(1000+ms) * time.Millisecond)}
	return &c
}

// latencies reports the p50 and p99 of ds, in milliseconds.
func latencies(b *testing.B, ds []time.Duration) {
	slices.Sort(ds)
	at := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000 }
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// BenchmarkPolicyPut is one policy write through the applier, as PUT
// /v1/policies/svc-00042 runs it (validation, conflict check and lint on
// the view, the guarded transaction), with n services and policies in the
// store. Each write changes the policy, so each one commits to etcd.
func BenchmarkPolicyPut(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st := seeded(b, n)
			a := apply.New(st, policies.ValidateOptions{})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				a.Run(ctx)
			}()
			defer func() {
				cancel()
				<-done
			}()
			if _, err := a.Put(ctx, policy(0), 0, "bench"); err != nil { // the view loaded
				b.Fatal(err)
			}
			var ds []time.Duration
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				i++
				p := policy(i)
				start := time.Now()
				if _, err := a.Put(ctx, p, 0, "bench"); err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(start))
			}
			latencies(b, ds)
		})
	}
}

// BenchmarkEtcdCommit is etcd's own part of a policy write: the same
// policy put straight through the store (one transaction, no checks), with
// n services and policies in the store.
func BenchmarkEtcdCommit(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			st := seeded(b, n)
			var ds []time.Duration
			i := 0
			for b.Loop() {
				i++
				p := policy(i)
				start := time.Now()
				if _, err := st.Put(context.Background(), p, 0); err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(start))
			}
			latencies(b, ds)
		})
	}
}
