package policies

import (
	"fmt"
	"testing"
	"time"
)

// benchSet is a mesh of n services, each with a policy and a fallback, a
// route policy on every tenth and an experiment on every hundredth.
func benchSet(n int) *Set {
	s := NewSet(&ResiliencePolicy{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindPolicy}, Metadata: Metadata{Name: "mesh"},
		Spec: PolicySpec{Target: Target{Service: "*"}, Timeouts: &Timeouts{Request: Dur(5 * time.Second)},
			Retries: &Retries{Attempts: Ptr(2), On: []string{"unavailable"}, Budget: &Budget{Percent: Ptr(20.0)}}}})
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("svc-%05d", i)
		s.Add(&Service{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindService}, Metadata: Metadata{Name: name},
			Spec: ServiceSpec{Protocol: ProtocolHTTP, Port: 80, Endpoints: []Endpoint{{Address: "10.0.0.1", Port: 8080, Weight: 1}}}})
		s.Add(&ResiliencePolicy{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindPolicy}, Metadata: Metadata{Name: name},
			Spec: PolicySpec{Target: Target{Service: name}, Sources: []string{"frontend"},
				CircuitBreaker: &CircuitBreaker{FailurePercentage: &FailurePercentage{}},
				Fallback:       &Fallback{Service: fmt.Sprintf("svc-%05d", (i+1)%n)}}})
		if i%10 == 0 {
			s.Add(&ResiliencePolicy{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindPolicy}, Metadata: Metadata{Name: name + "-write"},
				Spec: PolicySpec{Target: Target{Service: name, Route: &RouteMatch{PathPrefix: "/write"}}, Retries: &Retries{Attempts: Ptr(0)}}})
		}
		if i%100 == 0 {
			s.Add(&ChaosExperiment{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindExperiment}, Metadata: Metadata{Name: name + "-503"},
				Spec: ExperimentSpec{Target: Target{Service: name}, Abort: &Abort{Percent: 5, HTTPStatus: 503}, Duration: Dur(time.Minute)}})
		}
	}
	return s
}

// BenchmarkLint measures a whole-set lint, as the API runs on every write.
func BenchmarkLint(b *testing.B) {
	for _, n := range []int{100, 1000} {
		s := benchSet(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Lint(s)
			}
		})
	}
}
