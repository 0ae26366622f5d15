package xds

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds/ir"
	"github.com/bulwarkmesh/bulwark/xds/resolve"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// benchSizes are the mesh sizes of the translation benchmarks.
var benchSizes = []int{1000, 10000}

// benchSet is a mesh of n services, each with three endpoints in two zones
// and a policy of its own on top of a mesh default; every tenth service
// also has a route policy and a fallback, every hundredth an experiment.
func benchSet(n int) *policies.Set {
	set := policies.NewSet(&policies.ResiliencePolicy{
		TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindPolicy},
		Metadata: policies.Metadata{Name: "mesh-default"},
		Spec: policies.PolicySpec{
			Target:   policies.Target{Service: "*"},
			Timeouts: &policies.Timeouts{Connect: policies.Dur(time.Second), Request: policies.Dur(5 * time.Second)},
			Retries: &policies.Retries{Attempts: policies.Ptr(2), On: []string{"5xx", "reset", "unavailable"},
				Methods: []string{"GET", "PUT"}, Budget: &policies.Budget{Percent: policies.Ptr(20.0)}},
		},
	})
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("svc-%05d", i)
		set.Add(&policies.Service{
			TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindService},
			Metadata: policies.Metadata{Name: name, Labels: map[string]string{"tier": "standard"}},
			Spec: policies.ServiceSpec{Port: 8080, Endpoints: []policies.Endpoint{
				{Address: fmt.Sprintf("10.%d.%d.1", i/250, i%250), Port: 9001, Zone: "z1"},
				{Address: fmt.Sprintf("10.%d.%d.2", i/250, i%250), Port: 9001, Zone: "z1"},
				{Address: fmt.Sprintf("10.%d.%d.3", i/250, i%250), Port: 9001, Zone: "z2", Weight: 2},
			}},
		})
		spec := policies.PolicySpec{
			Target:         policies.Target{Service: name},
			Timeouts:       &policies.Timeouts{Request: policies.Dur(2 * time.Second)},
			CircuitBreaker: &policies.CircuitBreaker{Consecutive5xx: policies.Ptr(5), SuccessRate: &policies.SuccessRate{}},
			Bulkhead:       &policies.Bulkhead{MaxConnections: policies.Ptr(100), MaxRequests: policies.Ptr(200)},
		}
		if i%10 == 0 && i+1 < n {
			spec.Fallback = &policies.Fallback{Service: fmt.Sprintf("svc-%05d", i+1)}
			set.Add(&policies.ResiliencePolicy{
				TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindPolicy},
				Metadata: policies.Metadata{Name: name + "-write"},
				Spec: policies.PolicySpec{Target: policies.Target{Service: name, Route: &policies.RouteMatch{PathPrefix: "/write"}},
					Retries: &policies.Retries{Attempts: policies.Ptr(0)}},
			})
		}
		set.Add(&policies.ResiliencePolicy{
			TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindPolicy},
			Metadata: policies.Metadata{Name: name},
			Spec:     spec,
		})
		if i%100 == 0 {
			set.Add(&policies.ChaosExperiment{
				TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindExperiment},
				Metadata: policies.Metadata{Name: name + "-chaos"},
				Spec: policies.ExperimentSpec{Target: policies.Target{Service: name}, Headers: map[string]string{"x-chaos": "on"},
					Abort: &policies.Abort{Percent: 5, HTTPStatus: 503}, Duration: policies.Dur(10 * time.Minute)},
			})
		}
	}
	return set
}

func benchIR(b *testing.B, set *policies.Set, flavor ir.Flavor) *ir.Xds {
	b.Helper()
	x, errs := resolve.Resolve(set, flavor, "", resolve.Options{})
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	return x
}

// BenchmarkResolve measures policies → IR for one group that calls every service.
func BenchmarkResolve(b *testing.B) {
	for _, n := range benchSizes {
		set := benchSet(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				x, errs := resolve.Resolve(set, ir.FlavorEnvoy, "", resolve.Options{})
				if len(errs) > 0 || len(x.Services) != n {
					b.Fatal(errs)
				}
			}
		})
	}
}

// BenchmarkTranslate measures IR → validated resources for one group, per
// flavor, from scratch (no memoization).
func BenchmarkTranslate(b *testing.B) {
	for _, flavor := range []ir.Flavor{ir.FlavorEnvoy, ir.FlavorGRPC} {
		for _, n := range benchSizes {
			x := benchIR(b, benchSet(n), flavor)
			b.Run(fmt.Sprintf("%s/%d", flavor, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := translate.Translate(x); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkTranslateCached measures a rebuild through a warm Cache: every
// service is already translated, so a build costs the cache lookups (a
// content key per service) and assembling the group.
func BenchmarkTranslateCached(b *testing.B) {
	for _, flavor := range []ir.Flavor{ir.FlavorEnvoy, ir.FlavorGRPC} {
		for _, n := range benchSizes {
			x := benchIR(b, benchSet(n), flavor)
			cache := translate.NewCache()
			if _, err := translate.TranslateUsing(x, cache.TranslateService); err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s/%d", flavor, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := translate.TranslateUsing(x, cache.TranslateService); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkRender measures the whole pipeline for one group: resolve,
// translate and Check.
func BenchmarkRender(b *testing.B) {
	for _, n := range benchSizes {
		set := benchSet(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, errs := Render(set, ir.FlavorEnvoy, ""); len(errs) > 0 {
					b.Fatal(errs)
				}
			}
		})
	}
}

// BenchmarkSerialize measures proto.Marshal (deterministic, as for content
// hashes) of every resource of a group.
func BenchmarkSerialize(b *testing.B) {
	for _, n := range benchSizes {
		r, err := translate.Translate(benchIR(b, benchSet(n), ir.FlavorEnvoy))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			opts := proto.MarshalOptions{Deterministic: true}
			for b.Loop() {
				size := 0
				for _, list := range r.ByType() {
					for _, m := range list {
						out, err := opts.Marshal(m)
						if err != nil {
							b.Fatal(err)
						}
						size += len(out)
					}
				}
				b.SetBytes(int64(size))
			}
		})
	}
}
