package ir

import (
	"errors"
	"flag"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
)

// update is accepted so that `go test ./xds/... -update` runs in every package.
var _ = flag.Bool("update", false, "regenerate golden files (no golden files in this package)")

func validService() *Service {
	return &Service{
		Name: "payments", Protocol: "http", Port: 8080,
		Endpoints: []Endpoint{{Address: "10.0.0.1", Port: 9001, Zone: "z1", Weight: 1}, {Address: "10.0.0.2", Port: 9001, Weight: 2}},
		Cluster: ClusterPolicy{
			ConnectTimeout: policies.Dur(time.Second),
			CircuitBreaker: &policies.CircuitBreaker{Consecutive5xx: policies.Ptr(5), MaxEjectionPercent: policies.Ptr(50)},
			Bulkhead:       &policies.Bulkhead{MaxRequests: policies.Ptr(100)},
			RetryBudget:    &policies.Budget{Percent: policies.Ptr(20.0), MinConcurrency: policies.Ptr(3)},
			HealthCheck: &policies.HealthCheck{HTTP: &policies.HTTPHealthCheck{Path: "/health", ExpectedStatuses: []int{200}},
				Interval: policies.Dur(5 * time.Second), Timeout: policies.Dur(time.Second),
				UnhealthyThreshold: policies.Ptr(3), HealthyThreshold: policies.Ptr(2)},
		},
		Fallback: "payments-static",
		Routes: []*Route{
			{PathPrefix: "/charge", Timeout: policies.Dur(3 * time.Second), Retry: &Retry{Attempts: 2, On: []string{"5xx"}, Methods: []string{"GET"},
				BackoffBase: policies.Duration(25 * time.Millisecond), BackoffMax: policies.Duration(250 * time.Millisecond)}},
			{PathPrefix: "/", Fault: &Fault{Experiment: "e", Abort: &policies.Abort{Percent: 10, HTTPStatus: 503}}},
		},
	}
}

func TestServiceValidateAcceptsValid(t *testing.T) {
	require.NoError(t, validService().Validate())
}

func TestServiceValidateReportsPaths(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(s *Service)
		want   []string
	}{
		{"bad name", func(s *Service) { s.Name = "Pay_ments" }, []string{"services[Pay_ments].name: "}},
		{"protocol", func(s *Service) { s.Protocol = "tcp" }, []string{"services[payments].protocol: must be http, http2 or grpc"}},
		{"port", func(s *Service) { s.Port = 0 }, []string{"services[payments].port: must be a port"}},
		{"dns and endpoints", func(s *Service) { s.DNS = "pay.example.com:443" }, []string{"services[payments].dns: exclusive with endpoints"}},
		{"dns without port", func(s *Service) { s.Endpoints = nil; s.DNS = "pay.example.com" }, []string{"services[payments].dns: must be host:port"}},
		{"endpoint address", func(s *Service) { s.Endpoints[0].Address = "pay_internal" }, []string{"services[payments].endpoints[0].address: must be an IP address or a hostname"}},
		{"unspecified address", func(s *Service) { s.Endpoints[0].Address = "0.0.0.0" }, []string{"services[payments].endpoints[0].address: 0.0.0.0 is not an address"}},
		{"endpoint weight", func(s *Service) { s.Endpoints[1].Weight = 0 }, []string{"services[payments].endpoints[1].weight: must be at least 1"}},
		{"duplicate endpoint", func(s *Service) { s.Endpoints[1].Address = "10.0.0.1" }, []string{"services[payments].endpoints[1]: duplicate of endpoints[0]"}},
		{"connect timeout", func(s *Service) { s.Cluster.ConnectTimeout = policies.Dur(0) }, []string{"services[payments].cluster.connectTimeout: must be greater than 0"}},
		{"ejection percent", func(s *Service) { s.Cluster.CircuitBreaker.MaxEjectionPercent = policies.Ptr(101) }, []string{"services[payments].cluster.circuitBreaker.maxEjectionPercent: must be a percentage"}},
		{"stdev factor", func(s *Service) {
			s.Cluster.CircuitBreaker.SuccessRate = &policies.SuccessRate{StdevFactor: policies.Ptr(0.0)}
		}, []string{"services[payments].cluster.circuitBreaker.successRate.stdevFactor: must be between 0.001 and 4294967.295, got 0"}},
		{"bulkhead", func(s *Service) { s.Cluster.Bulkhead.MaxRequests = policies.Ptr(0) }, []string{"services[payments].cluster.bulkhead.maxRequests: must be between 1"}},
		{"budget", func(s *Service) { s.Cluster.RetryBudget.Percent = policies.Ptr(120.0) }, []string{"services[payments].cluster.retryBudget.percent: must be a percentage"}},
		{"two probes", func(s *Service) { s.Cluster.HealthCheck.TCP = &policies.TCPHealthCheck{} }, []string{"services[payments].cluster.healthCheck: set exactly one of http, grpc and tcp, got 2"}},
		{"probe path", func(s *Service) { s.Cluster.HealthCheck.HTTP.Path = "health" }, []string{"services[payments].cluster.healthCheck.http.path: must start with /"}},
		{"probe status", func(s *Service) { s.Cluster.HealthCheck.HTTP.ExpectedStatuses = []int{700} }, []string{"services[payments].cluster.healthCheck.http.expectedStatuses[0]: must be an HTTP status"}},
		{"health check thresholds", func(s *Service) { s.Cluster.HealthCheck.HealthyThreshold = nil }, []string{"services[payments].cluster.healthCheck.healthyThreshold: required"}},
		{"self fallback", func(s *Service) { s.Fallback = "payments" }, []string{"services[payments].fallback: a service cannot fall back to itself"}},
		{"no routes", func(s *Service) { s.Routes = nil }, []string{"services[payments].routes: at least the default route"}},
		{"default route last", func(s *Service) { s.Routes[1].PathPrefix = "/refund" }, []string{"services[payments].routes[1].pathPrefix: the last route must be the default route"}},
		{"shadowed route", func(s *Service) {
			s.Routes = append([]*Route{{PathPrefix: "/c"}}, s.Routes...)
		}, []string{`services[payments].routes[1].pathPrefix: "/charge" can never match: routes[0] ("/c")`}},
		{"backoff", func(s *Service) { s.Routes[0].Retry.BackoffMax = policies.Duration(time.Millisecond) }, []string{"services[payments].routes[0].retry.backoffMax: must be >= backoffBase (25ms), got 1ms"}},
		{"retry condition", func(s *Service) { s.Routes[0].Retry.On = []string{"5xx", "sometimes"} }, []string{`services[payments].routes[0].retry.on[1]: unknown retry condition "sometimes"`}},
		{"retry method", func(s *Service) { s.Routes[0].Retry.Methods = []string{"get"} }, []string{"services[payments].routes[0].retry.methods[0]: must be an upper-case HTTP method"}},
		{"retry status", func(s *Service) { s.Routes[0].Retry.StatusCodes = []int{42} }, []string{"services[payments].routes[0].retry.statusCodes[0]: must be an HTTP status"}},
		{"negative timeout", func(s *Service) { s.Routes[0].Timeout = policies.Dur(-time.Second) }, []string{"services[payments].routes[0].timeout: must not be negative"}},
		{"fault without action", func(s *Service) { s.Routes[1].Fault.Abort = nil }, []string{"services[payments].routes[1].fault: set abort, delay or both"}},
		{"fault both statuses", func(s *Service) { s.Routes[1].Fault.Abort.GRPCStatus = policies.Ptr(14) }, []string{"services[payments].routes[1].fault.abort: set one of httpStatus and grpcStatus"}},
		{"fault percent", func(s *Service) { s.Routes[1].Fault.Abort.Percent = 150 }, []string{"services[payments].routes[1].fault.abort.percent: must be a percentage"}},
		{"fault delay", func(s *Service) { s.Routes[1].Fault.Delay = &policies.Delay{Percent: 5} }, []string{"services[payments].routes[1].fault.delay.fixed: must be greater than 0"}},
		{"fault header", func(s *Service) { s.Routes[1].Fault.Headers = map[string]string{"x chaos": "on"} }, []string{"services[payments].routes[1].fault.headers.x chaos: not a valid HTTP header name"}},
		{"several at once", func(s *Service) { s.Port = 70000; s.Routes[0].Retry.BackoffBase = 0 }, []string{
			"services[payments].port: ", "services[payments].routes[0].retry.backoffBase: must be greater than 0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := validService()
			tc.mutate(s)
			err := s.Validate()
			require.Error(t, err)
			for _, want := range tc.want {
				require.Contains(t, err.Error(), want)
			}
			var fe *FieldError
			require.True(t, errors.As(err, &fe), "errors are FieldErrors")
		})
	}
}

func TestDuplicateEndpointsInLongLists(t *testing.T) {
	s := validService()
	s.Endpoints = nil
	for i := 0; i < 40; i++ {
		s.Endpoints = append(s.Endpoints, Endpoint{Address: "10.0.1." + strconv.Itoa(i), Port: 80, Weight: 1})
	}
	require.NoError(t, s.Validate())
	s.Endpoints[33].Address = "10.0.1.7"
	require.ErrorContains(t, s.Validate(), "services[payments].endpoints[33]: duplicate of endpoints[7] (10.0.1.7:80)")
}

func TestHostnameEndpoints(t *testing.T) {
	s := validService()
	require.False(t, s.HasHostnames())
	s.Endpoints[1].Address = "pay-2.internal.example."
	require.NoError(t, s.Validate())
	require.True(t, s.HasHostnames())
	for _, ok := range []string{"a", "a.b", "A-1.example.com", "x.y."} {
		require.True(t, IsHostname(ok), ok)
	}
	for _, bad := range []string{"", "10.0.0.1", "::1", "-a.b", "a..b", "a_b", "a b", strings.Repeat("a", 64)} {
		require.False(t, IsHostname(bad), bad)
	}
}

func TestRetryDisabledSkipsRetryChecks(t *testing.T) {
	s := validService()
	s.Routes[0].Retry = &Retry{Attempts: 0}
	require.NoError(t, s.Validate())
}

func TestXdsValidate(t *testing.T) {
	fb := validService()
	fb.Name, fb.Fallback = "payments-static", ""
	x := &Xds{Flavor: FlavorEnvoy, Outbound: Address{Host: "127.0.0.1", Port: 15001}, Services: []*Service{validService(), fb}}
	require.NoError(t, x.Validate())

	x.Services = x.Services[:1]
	require.ErrorContains(t, x.Validate(), `services[payments].fallback: service "payments-static" is not part of this group`)

	x.Services = []*Service{validService(), validService()}
	x.Services[0].Fallback, x.Services[1].Fallback = "", ""
	require.ErrorContains(t, x.Validate(), "services[payments]: duplicate service name")

	bad := &Xds{Flavor: "istio", Services: []*Service{nil}}
	err := bad.Validate()
	require.ErrorContains(t, err, `flavor: must be "envoy" or "grpc", got "istio"`)
	require.ErrorContains(t, err, "services[0]: must not be null")

	env := &Xds{Flavor: FlavorEnvoy, Outbound: Address{Host: "localhost", Port: 0}}
	err = env.ValidateGroup()
	require.ErrorContains(t, err, "outbound.host: must be an IP address")
	require.ErrorContains(t, err, "outbound.port: must be a port")

	require.NoError(t, (&Xds{Flavor: FlavorGRPC}).Validate(), "gRPC groups need no outbound address")
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"a", "payments", "pay-ments-2", strings.Repeat("a", 63)} {
		require.NoError(t, CheckName(ok), ok)
	}
	for _, bad := range []string{"", "-a", "a-", "A", "a.b", "a~fallback", strings.Repeat("a", 64)} {
		require.Error(t, CheckName(bad), bad)
	}
}

func TestDecodeIsStrict(t *testing.T) {
	x, err := Decode([]byte("flavor: grpc\nservices:\n- name: a\n  protocol: grpc\n  port: 80\n  cluster: {connectTimeout: 1s}\n  routes: [{pathPrefix: /}]\n"))
	require.NoError(t, err)
	require.NoError(t, x.Validate())
	require.Equal(t, policies.Duration(time.Second), *x.Services[0].Cluster.ConnectTimeout)

	_, err = Decode([]byte("flavor: grpc\nservices:\n- name: a\n  prot: grpc\n"))
	require.ErrorContains(t, err, "field prot not found")
}
