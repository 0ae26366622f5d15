package policies

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDefaultService(t *testing.T) {
	s := &Service{Spec: ServiceSpec{Port: 80, Endpoints: []Endpoint{{Address: "a", Port: 1}, {Address: "b", Port: 1, Weight: 5}}}}
	DefaultService(s)
	require.Equal(t, ServiceSpec{Protocol: ProtocolHTTP, Port: 80, Endpoints: []Endpoint{
		{Address: "a", Port: 1, Weight: 1}, {Address: "b", Port: 1, Weight: 5},
	}}, s.Spec)

	g := &Service{Spec: ServiceSpec{Protocol: ProtocolGRPC, Port: 80}}
	DefaultService(g)
	require.Equal(t, ProtocolGRPC, g.Spec.Protocol)
	require.Nil(t, g.Spec.Endpoints)
}

func TestDefaultEffective(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   PolicySpec
		want PolicySpec
	}{
		{
			name: "nothing set: only the connect timeout",
			want: PolicySpec{Timeouts: &Timeouts{Connect: Dur(5 * time.Second)}},
		},
		{
			name: "set values stay",
			in: PolicySpec{Timeouts: &Timeouts{Connect: Dur(time.Second), Request: Dur(3 * time.Second)},
				Retries: &Retries{Attempts: Ptr(0), On: []string{"5xx"}, Backoff: &Backoff{Base: Dur(time.Millisecond), Max: Dur(time.Second)},
					Budget: &Budget{Percent: Ptr(50.0), MinConcurrency: Ptr(0)}}},
			want: PolicySpec{Timeouts: &Timeouts{Connect: Dur(time.Second), Request: Dur(3 * time.Second)},
				Retries: &Retries{Attempts: Ptr(0), On: []string{"5xx"}, Backoff: &Backoff{Base: Dur(time.Millisecond), Max: Dur(time.Second)},
					Budget: &Budget{Percent: Ptr(50.0), MinConcurrency: Ptr(0)}}},
		},
		{
			name: "empty retries",
			in:   PolicySpec{Retries: &Retries{}},
			want: PolicySpec{Timeouts: &Timeouts{Connect: Dur(5 * time.Second)},
				Retries: &Retries{Attempts: Ptr(2), On: []string{"connect-failure", "refused-stream", "reset", "unavailable"},
					Backoff: &Backoff{Base: Dur(25 * time.Millisecond), Max: Dur(250 * time.Millisecond)}}},
		},
		{
			name: "status codes alone keep the conditions empty; max follows base; empty budget",
			in:   PolicySpec{Retries: &Retries{StatusCodes: []int{503}, Backoff: &Backoff{Base: Dur(100 * time.Millisecond)}, Budget: &Budget{}}},
			want: PolicySpec{Timeouts: &Timeouts{Connect: Dur(5 * time.Second)},
				Retries: &Retries{Attempts: Ptr(2), StatusCodes: []int{503},
					Backoff: &Backoff{Base: Dur(100 * time.Millisecond), Max: Dur(time.Second)},
					Budget:  &Budget{Percent: Ptr(20.0), MinConcurrency: Ptr(3)}}},
		},
		{
			name: "empty circuit breaker",
			in:   PolicySpec{CircuitBreaker: &CircuitBreaker{}},
			want: PolicySpec{Timeouts: &Timeouts{Connect: Dur(5 * time.Second)},
				CircuitBreaker: &CircuitBreaker{Interval: Dur(10 * time.Second), BaseEjectionTime: Dur(30 * time.Second), MaxEjectionPercent: Ptr(10)}},
		},
		{
			name: "circuit breaker detectors",
			in:   PolicySpec{CircuitBreaker: &CircuitBreaker{FailurePercentage: &FailurePercentage{Threshold: Ptr(50)}, SuccessRate: &SuccessRate{RequestVolume: Ptr(7)}}},
			want: PolicySpec{Timeouts: &Timeouts{Connect: Dur(5 * time.Second)},
				CircuitBreaker: &CircuitBreaker{
					FailurePercentage:  &FailurePercentage{Threshold: Ptr(50), MinimumHosts: Ptr(5), RequestVolume: Ptr(50)},
					SuccessRate:        &SuccessRate{StdevFactor: Ptr(1.9), MinimumHosts: Ptr(5), RequestVolume: Ptr(7)},
					Interval:           Dur(10 * time.Second),
					BaseEjectionTime:   Dur(30 * time.Second),
					MaxEjectionPercent: Ptr(10)}},
		},
		{
			name: "health check; the shared probe is copied, not changed",
			in:   PolicySpec{HealthCheck: &HealthCheck{HTTP: sharedProbe, HealthyThreshold: Ptr(1)}},
			want: PolicySpec{Timeouts: &Timeouts{Connect: Dur(5 * time.Second)},
				HealthCheck: &HealthCheck{HTTP: &HTTPHealthCheck{Path: "/healthz", ExpectedStatuses: []int{200}},
					Interval: Dur(5 * time.Second), Timeout: Dur(time.Second), UnhealthyThreshold: Ptr(3), HealthyThreshold: Ptr(1)}},
		},
		{
			name: "health check with its own statuses and a tcp probe",
			in:   PolicySpec{HealthCheck: &HealthCheck{TCP: &TCPHealthCheck{}, Interval: Dur(time.Second)}},
			want: PolicySpec{Timeouts: &Timeouts{Connect: Dur(5 * time.Second)},
				HealthCheck: &HealthCheck{TCP: &TCPHealthCheck{}, Interval: Dur(time.Second), Timeout: Dur(time.Second),
					UnhealthyThreshold: Ptr(3), HealthyThreshold: Ptr(2)}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in
			DefaultEffective(&got)
			require.Equal(t, tc.want, got)
		})
	}
	require.Equal(t, &HTTPHealthCheck{Path: "/healthz"}, sharedProbe, "the policy's own probe must not change")

	// The default condition list is copied: changing one result changes no other.
	a := PolicySpec{Retries: &Retries{}}
	DefaultEffective(&a)
	a.Retries.On[0] = "5xx"
	require.Equal(t, []string{"connect-failure", "refused-stream", "reset", "unavailable"}, DefaultRetryOn)
}

var sharedProbe = &HTTPHealthCheck{Path: "/healthz"}
