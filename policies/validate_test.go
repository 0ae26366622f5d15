package policies

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// vcase is one validation case: a resource and the exact violations.
type vcase struct {
	name string
	doc  string
	opts ValidateOptions
	want Violations
}

func runValidate(t *testing.T, cases []vcase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := decodeOne(t, tc.doc)
			got := Validate(r, tc.opts)
			require.Equal(t, tc.want, got)
			// Deterministic: the same input always gives the same list.
			require.Equal(t, got, Validate(r, tc.opts))
		})
	}
}

// lbl is the DNS-1123 label message for a bad name.
func lbl(s string) string {
	return `must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit (got "` + s + `")`
}

func TestValidateService(t *testing.T) {
	runValidate(t, []vcase{
		{name: "valid static endpoints", doc: doc("Service", "payments", `
  protocol: http
  port: 8080
  endpoints:
    - {address: 127.0.0.1, port: 9001, zone: z1, weight: 1}
    - {address: pay-2.internal, port: 9001, weight: 0}
    - {address: "::1", port: 9002}
  dependencies: [ledger, fraud]`)},
		{name: "valid without endpoints: instances register themselves", doc: doc("Service", "payments", "{port: 8080}")},
		{name: "valid dns", doc: doc("Service", "payments", `{protocol: grpc, port: 50051, dns: "payments.internal:50051"}`)},
		{name: "valid dns ipv6", doc: doc("Service", "payments", `{protocol: http2, port: 80, dns: "[::1]:80"}`)},
		{name: "every field wrong", doc: doc("Service", "payments", `
  protocol: tcp
  port: 0
  endpoints:
    - {address: "not a host", port: 70000, weight: -1, zone: Z_1}
    - {address: 0.0.0.0, port: 1}
    - {address: "", port: 2}
  dns: payments`), want: Violations{
			{Field: "spec.protocol", Message: `must be one of http, http2, grpc (got "tcp")`},
			{Field: "spec.port", Message: "must be between 1 and 65535 (got 0)"},
			{Field: "spec.dns", Message: "set either endpoints or dns, not both"},
			{Field: "spec.endpoints[0].address", Message: `must be an IP address or a hostname (got "not a host")`},
			{Field: "spec.endpoints[0].port", Message: "must be between 1 and 65535 (got 70000)"},
			{Field: "spec.endpoints[0].weight", Message: "must not be negative (got -1); 0 means the default weight of 1"},
			{Field: "spec.endpoints[0].zone", Message: lbl("Z_1")},
			{Field: "spec.endpoints[1].address", Message: "0.0.0.0 is not an address a proxy can connect to"},
			{Field: "spec.endpoints[2].address", Message: "required: an IP address or a hostname"},
			{Field: "spec.dns", Message: `must be host:port, such as payments.internal:8080 (got "payments")`},
		}},
		{name: "duplicates and self dependency", doc: doc("Service", "payments", `
  port: 80
  endpoints: [{address: 10.0.0.1, port: 80}, {address: 10.0.0.1, port: 80}]
  dependencies: [ledger, Ledger, ledger, payments]`), want: Violations{
			{Field: "spec.endpoints[1]", Message: "duplicates spec.endpoints[0] (10.0.0.1:80)"},
			{Field: "spec.dependencies[1]", Message: lbl("Ledger")},
			{Field: "spec.dependencies[2]", Message: `"ledger" is listed twice (first at spec.dependencies[0])`},
			{Field: "spec.dependencies[3]", Message: "a service does not depend on itself: calls to itself need no entry"},
		}},
		{name: "dns host and port", doc: doc("Service", "payments", `{port: 80, dns: "bad_host:0"}`), want: Violations{
			{Field: "spec.dns", Message: `host "bad_host" is not a valid hostname`},
			{Field: "spec.dns", Message: `port "0" must be a number between 1 and 65535`},
		}},
	})
}

func TestValidateMetadata(t *testing.T) {
	runValidate(t, []vcase{
		{name: "missing name", doc: "apiVersion: bulwark/v1\nkind: Service\nmetadata: {}\nspec: {port: 80}\n", want: Violations{
			{Field: "metadata.name", Message: "required"},
		}},
		{name: "long name", doc: doc("Service", strings.Repeat("a", 64), "{port: 80}"), want: Violations{
			{Field: "metadata.name", Message: "must be a DNS-1123 label of at most 63 characters (got 64)"},
		}},
		{name: "name with a trailing hyphen", doc: doc("Service", "payments-", "{port: 80}"), want: Violations{
			{Field: "metadata.name", Message: lbl("payments-")},
		}},
		{name: "good labels", doc: "apiVersion: bulwark/v1\nkind: Service\nmetadata: {name: a, labels: {tier: critical, example.com/team: Pay_Ments.1, empty: ''}}\nspec: {port: 80}\n"},
	})

	// apiVersion and kind cannot be wrong after decoding; resources built in
	// code can.
	svc := &Service{
		TypeMeta: TypeMeta{APIVersion: "v1", Kind: "Svc"},
		Metadata: Metadata{Name: "Payments_1", Revision: -1, Labels: map[string]string{
			"tier": "critical", "bad key": "x", "example.com/team": "a b", "Example.com/x": "1", "k": strings.Repeat("a", 64),
		}},
		Spec: ServiceSpec{Port: 80},
	}
	require.Equal(t, Violations{
		{Field: "apiVersion", Message: `must be "bulwark/v1", got "v1"`},
		{Field: "kind", Message: `must be "Service", got "Svc"`},
		{Field: "metadata.name", Message: lbl("Payments_1")},
		{Field: "metadata.labels.Example.com/x", Message: `invalid label key prefix "Example.com": use a lower-case DNS subdomain such as example.com`},
		{Field: "metadata.labels.bad key", Message: `invalid label key "bad key": use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit, after an optional prefix/`},
		{Field: "metadata.labels.example.com/team", Message: `invalid label value "a b": use letters, digits, '-', '_' and '.', starting and ending with a letter or digit`},
		{Field: "metadata.labels.k", Message: "label value must be at most 63 characters (got 64)"},
		{Field: "metadata.revision", Message: "must not be negative (got -1)"},
	}, Validate(svc, ValidateOptions{}))

	require.Equal(t, Violations{{Field: "kind", Message: `must be "ResiliencePolicy", got "Service"`}},
		Validate(&ResiliencePolicy{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindService}, Metadata: Metadata{Name: "p"},
			Spec: PolicySpec{Target: Target{Service: "*"}, Timeouts: &Timeouts{Request: Dur(time.Second)}}}, ValidateOptions{}))
	require.Equal(t, Violations{{Message: "no resource"}}, Validate((*Service)(nil), ValidateOptions{}))
	require.Equal(t, Violations{{Message: "no resource"}}, Validate((*ResiliencePolicy)(nil), ValidateOptions{}))
	require.Equal(t, Violations{{Message: "no resource"}}, Validate((*ChaosExperiment)(nil), ValidateOptions{}))
	require.Equal(t, Violations{{Field: "kind", Message: "unsupported resource type <nil>: use Service, ResiliencePolicy or ChaosExperiment"}},
		Validate(nil, ValidateOptions{}))
}

func TestValidateEndpoint(t *testing.T) {
	require.Empty(t, ValidateEndpoint("ep", Endpoint{Address: "10.1.2.3", Port: 8080, Instance: "pod-1.ns:8080"}))
	require.Empty(t, ValidateEndpoint("ep", Endpoint{Address: "Host.Example.COM.", Port: 1}))
	require.Equal(t, Violations{
		{Field: "ep.address", Message: `must be an IP address or a hostname (got "a..b")`},
		{Field: "ep.port", Message: "must be between 1 and 65535 (got -3)"},
		{Field: "ep.instance", Message: `must be 1-253 letters, digits, '.', '_', ':' or '-' (got "a/b")`},
	}, ValidateEndpoint("ep", Endpoint{Address: "a..b", Port: -3, Instance: "a/b"}))
	require.Equal(t, Violations{
		{Field: "ep.address", Message: ":: is not an address a proxy can connect to"},
	}, ValidateEndpoint("ep", Endpoint{Address: "::", Port: 80}))
}

func TestValidateExperiment(t *testing.T) {
	runValidate(t, []vcase{
		{name: "valid design example", doc: doc("ChaosExperiment", "payments-503", `
  target: {service: payments}
  sources: [checkout]
  headers: {x-chaos: "on"}
  abort: {percent: 10, httpStatus: 503}
  delay: {percent: 5, fixed: 2s}
  duration: 10m
  hypothesis: checkout's error rate stays under 1% thanks to the fallback`)},
		{name: "valid at both caps with a gRPC status and a route", doc: doc("ChaosExperiment", "pay-unavailable", `
  target: {service: payments, route: {pathPrefix: /pay.v1.Payments/}}
  headers: {":authority": payments}
  abort: {percent: 50, grpcStatus: 14}
  duration: 1h`)},
		{name: "valid grpc status 0", doc: doc("ChaosExperiment", "e", `{target: {service: payments}, abort: {percent: 1, grpcStatus: 0}, duration: 1m}`)},
		{name: "broad target, bad sources and headers", doc: doc("ChaosExperiment", "e", `
  target: {service: "*", selector: {tier: critical}, route: {pathPrefix: ""}}
  sources: [Checkout]
  headers: {"x chaos": "on", x-ok: "a\nb"}
  delay: {percent: 5, fixed: 1s}
  duration: 1m`), want: Violations{
			{Field: "spec.target.service", Message: `must name one service, not "*": an experiment targets a single service`},
			{Field: "spec.target.selector", Message: "an experiment targets one service by name: use target.service instead"},
			{Field: "spec.target.route.pathPrefix", Message: `required: a path prefix starting with "/", such as /charge`},
			{Field: "spec.sources[0]", Message: lbl("Checkout")},
			{Field: "spec.headers.x chaos", Message: "invalid header name \"x chaos\": use letters, digits and -_.!#$%&'*+^`|~"},
			{Field: "spec.headers.x-ok", Message: "header value must not contain NUL, CR or LF"},
		}},
		{name: "no target, no fault, no duration", doc: doc("ChaosExperiment", "e", `{target: {}}`), want: Violations{
			{Field: "spec.target.service", Message: "required: the one service to inject faults into"},
			{Field: "spec", Message: "set abort, delay or both: an experiment must inject a fault"},
			{Field: "spec.duration", Message: "required: how long the experiment runs before it ends by itself, at most 1h"},
		}},
		{name: "above the caps", doc: doc("ChaosExperiment", "e", `
  target: {service: payments}
  abort: {percent: 60, httpStatus: 503, grpcStatus: 14}
  delay: {percent: 0, fixed: 0s}
  duration: 2h`), want: Violations{
			{Field: "spec.abort.percent", Message: "must be at most 50, the blast-radius cap (the server flag --max-fault-percent raises it); got 60"},
			{Field: "spec.abort", Message: "set exactly one of httpStatus or grpcStatus, not both"},
			{Field: "spec.delay.percent", Message: "must be > 0 (the share of calls to hit, at most 50)"},
			{Field: "spec.delay.fixed", Message: "required: how long to hold a delayed request, such as 2s"},
			{Field: "spec.duration", Message: "must be at most 1h, the server's cap (its flag --max-experiment-duration raises it); got 2h"},
		}},
		{name: "statuses out of range", doc: doc("ChaosExperiment", "e", `
  target: {service: payments}
  abort: {percent: 101}
  delay: {percent: 12.5, fixed: -1s}
  duration: 0s`), want: Violations{
			{Field: "spec.abort.percent", Message: "must be at most 100 (got 101)"},
			{Field: "spec.abort", Message: "set exactly one of httpStatus (such as 503) or grpcStatus (such as 14, unavailable)"},
			{Field: "spec.delay.fixed", Message: "must be > 0 (got -1s)"},
			{Field: "spec.duration", Message: "must be > 0 (got 0s)"},
		}},
		{name: "http status below 200", doc: doc("ChaosExperiment", "e", `{target: {service: payments}, abort: {percent: 1, httpStatus: 100}, duration: 1m}`), want: Violations{
			{Field: "spec.abort.httpStatus", Message: "must be between 200 and 599 (got 100)"},
		}},
		{name: "grpc status above 16", doc: doc("ChaosExperiment", "e", `{target: {service: payments}, abort: {percent: 1, grpcStatus: 17}, duration: 1m}`), want: Violations{
			{Field: "spec.abort.grpcStatus", Message: "must be a gRPC status code between 0 and 16 (got 17)"},
		}},
		{name: "raised caps admit more", opts: ValidateOptions{MaxFaultPercent: 100, MaxExperimentDuration: 3 * time.Hour},
			doc: doc("ChaosExperiment", "e", `{target: {service: payments}, abort: {percent: 100, httpStatus: 500}, duration: 3h}`)},
		{name: "lowered caps refuse more", opts: ValidateOptions{MaxFaultPercent: 5, MaxExperimentDuration: 90 * time.Minute},
			doc: doc("ChaosExperiment", "e", `{target: {service: payments}, abort: {percent: 10, httpStatus: 500}, duration: 2h}`), want: Violations{
				{Field: "spec.abort.percent", Message: "must be at most 5, the blast-radius cap (the server flag --max-fault-percent raises it); got 10"},
				{Field: "spec.duration", Message: "must be at most 90m, the server's cap (its flag --max-experiment-duration raises it); got 2h"},
			}},
		{name: "cap above 100 still stops at 100", opts: ValidateOptions{MaxFaultPercent: 200},
			doc: doc("ChaosExperiment", "e", `{target: {service: payments}, delay: {percent: 0, fixed: 1s}, duration: 1m}`), want: Violations{
				{Field: "spec.delay.percent", Message: "must be > 0 (the share of calls to hit, at most 100)"},
			}},
	})
}

func TestValidateStoredExperimentIgnoresStatus(t *testing.T) {
	r, err := DecodeStored([]byte(doc("ChaosExperiment", "e", `{target: {service: payments}, abort: {percent: 1, httpStatus: 503}, duration: 1m}`) +
		"status: {startedAt: \"2026-01-01T00:00:00Z\", outcome: running}\n"))
	require.NoError(t, err)
	require.Empty(t, Validate(r, ValidateOptions{}))
}
