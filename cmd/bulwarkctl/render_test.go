package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// rendered is the output of render -o json, navigated loosely.
type rendered struct {
	Listeners []obj `json:"listeners"`
	Routes    []obj `json:"routes"`
	Clusters  []obj `json:"clusters"`
	Endpoints []obj `json:"endpoints"`
}

// obj is one JSON object of the output.
type obj = map[string]any

func renderJSON(t *testing.T, file, service, flavor string) rendered {
	t.Helper()
	r := bulwarkctl(t, "", "render", "-f", file, "--service", service, "--flavor", flavor, "-o", "json")
	require.Equal(t, exitOK, r.code, r.stderr)
	require.Empty(t, r.stderr)
	var out rendered
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &out))
	return out
}

// named returns the object of list whose key field equals name.
func named(t *testing.T, list []obj, key, name string) obj {
	t.Helper()
	for _, o := range list {
		if o[key] == name {
			return o
		}
	}
	require.Failf(t, "not found", "no %s %q", key, name)
	return nil
}

// at walks a path of keys and list indexes through nested objects.
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(obj)
			require.True(t, ok, "at %v: want an object, got %T", p, v)
			v, ok = m[k]
			require.True(t, ok, "missing field %q in %v", k, m)
		case int:
			l, ok := v.([]any)
			require.True(t, ok, "at %v: want a list, got %T", p, v)
			require.Greater(t, len(l), k)
			v = l[k]
		}
	}
	return v
}

// routeOf returns the routes of service's virtual host in route configuration rc.
func routesOf(t *testing.T, rc obj, service string) []any {
	t.Helper()
	for _, vh := range at(t, rc, "virtual_hosts").([]any) {
		if vh.(obj)["name"] == service {
			return at(t, vh, "routes").([]any)
		}
	}
	require.Failf(t, "not found", "no virtual host %q", service)
	return nil
}

func routeWithPrefix(t *testing.T, routes []any, prefix string, withHeaders bool) obj {
	t.Helper()
	for _, r := range routes {
		m := at(t, r, "match").(obj)
		_, hasHeaders := m["headers"]
		if m["prefix"] == prefix && hasHeaders == withHeaders {
			return r.(obj)
		}
	}
	require.Failf(t, "not found", "no route with prefix %q (headers %v)", prefix, withHeaders)
	return nil
}

func TestRenderEnvoyEverySection(t *testing.T) {
	out := renderJSON(t, "testdata/render/mesh.yaml", "web", "envoy")

	// web depends on shop only; shop-static comes along as its fallback.
	var clusters []string
	for _, c := range out.Clusters {
		clusters = append(clusters, c["name"].(string))
	}
	require.Equal(t, []string{"shop", "shop-static", "shop~fallback"}, clusters)

	shop := named(t, out.Clusters, "name", "shop")
	require.Equal(t, "0.750s", shop["connect_timeout"])

	// circuitBreaker: outlier detection with every enforcing_* explicit.
	od := at(t, shop, "outlier_detection").(obj)
	for _, f := range []string{"enforcing_consecutive_5xx", "enforcing_consecutive_gateway_failure", "enforcing_success_rate", "enforcing_failure_percentage"} {
		require.EqualValues(t, 100, od[f], f)
	}
	for _, f := range []string{"enforcing_consecutive_local_origin_failure", "enforcing_local_origin_success_rate", "enforcing_failure_percentage_local_origin"} {
		require.EqualValues(t, 0, od[f], f)
	}
	require.EqualValues(t, 4, od["consecutive_5xx"])
	require.EqualValues(t, 2, od["consecutive_gateway_failure"])
	require.EqualValues(t, 60, od["failure_percentage_threshold"])
	require.EqualValues(t, 2500, od["success_rate_stdev_factor"])
	require.Equal(t, "5s", od["interval"])
	require.Equal(t, "20s", od["base_ejection_time"])
	require.EqualValues(t, 50, od["max_ejection_percent"])

	// bulkhead and the retry budget: circuit_breakers thresholds.
	th := at(t, shop, "circuit_breakers", "thresholds", 0).(obj)
	require.EqualValues(t, 64, th["max_connections"])
	require.EqualValues(t, 32, th["max_pending_requests"])
	require.EqualValues(t, 128, th["max_requests"])
	require.EqualValues(t, 15, at(t, th, "retry_budget", "budget_percent", "value"))
	require.EqualValues(t, 4, at(t, th, "retry_budget", "min_retry_concurrency"))
	require.EqualValues(t, 500, at(t, shop, "typed_extension_protocol_options", "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
		"common_http_protocol_options", "max_requests_per_connection"))

	// healthCheck.
	hc := at(t, shop, "health_checks", 0).(obj)
	require.Equal(t, "4s", hc["interval"])
	require.Equal(t, "0.500s", hc["timeout"])
	require.Equal(t, "/ready", at(t, hc, "http_health_check", "path"))
	require.Len(t, at(t, hc, "http_health_check", "expected_statuses"), 2)

	// fallback: the aggregate cluster, which the routes target.
	agg := named(t, out.Clusters, "name", "shop~fallback")
	require.Equal(t, "envoy.clusters.aggregate", at(t, agg, "cluster_type", "name"))
	require.Equal(t, []any{"shop", "shop-static"}, at(t, agg, "cluster_type", "typed_config", "clusters"))

	// The fault filter runs before the router.
	hcm := at(t, named(t, out.Listeners, "name", "outbound"), "filter_chains", 0, "filters", 0, "typed_config")
	require.Equal(t, "envoy.filters.http.fault", at(t, hcm, "http_filters", 0, "name"))
	require.Equal(t, "envoy.filters.http.router", at(t, hcm, "http_filters", 1, "name"))

	routes := routesOf(t, named(t, out.Routes, "name", "outbound"), "shop")
	require.Len(t, routes, 2, "/buy, then the default route")
	def := routeWithPrefix(t, routes, "/", false)
	action := at(t, def, "route").(obj)
	require.Equal(t, "shop~fallback", action["cluster"])
	require.Equal(t, "3s", action["timeout"])
	require.Equal(t, "45s", action["idle_timeout"])
	rp := at(t, action, "retry_policy").(obj)
	require.Equal(t, "5xx,reset,unavailable", rp["retry_on"])
	require.EqualValues(t, 2, rp["num_retries"])
	require.Equal(t, "0.800s", rp["per_try_timeout"])
	require.Equal(t, "0.040s", at(t, rp, "retry_back_off", "base_interval"))
	require.Equal(t, "0.160s", at(t, rp, "retry_back_off", "max_interval"))
	require.Len(t, rp["retriable_request_headers"], 2, "GET and PUT")

	// The experiment is in the route's per-filter config, with its header.
	fault := at(t, def, "typed_per_filter_config", "envoy.filters.http.fault").(obj)
	require.EqualValues(t, 200000, at(t, fault, "delay", "percentage", "numerator"))
	require.Equal(t, "1s", at(t, fault, "delay", "fixed_delay"))
	require.EqualValues(t, 14, at(t, fault, "abort", "grpc_status"))
	require.Equal(t, "x-game-day", at(t, fault, "headers", 0, "name"))

	// /buy: a shorter timeout and no retry policy at all.
	buy := at(t, routeWithPrefix(t, routes, "/buy", false), "route").(obj)
	require.Equal(t, "1.500s", buy["timeout"])
	require.NotContains(t, buy, "retry_policy")
}

func TestRenderGRPC(t *testing.T) {
	out := renderJSON(t, "testdata/render/mesh.yaml", "web", "grpc")

	// An API listener named after each service (and name:port), no socket listener.
	var listeners []string
	for _, l := range out.Listeners {
		listeners = append(listeners, l["name"].(string))
		require.Contains(t, l, "api_listener")
		require.NotContains(t, l, "address")
	}
	require.Contains(t, listeners, "shop")
	require.Contains(t, listeners, "shop:8080")

	routes := routesOf(t, named(t, out.Routes, "name", "shop"), "shop")
	for _, r := range routes {
		action := at(t, r, "route").(obj)
		require.NotContains(t, action, "timeout", "gRPC reads max_stream_duration")
		rp, ok := action["retry_policy"].(obj)
		if !ok {
			continue
		}
		require.NotEqualValues(t, 0, rp["num_retries"])
		require.NotContains(t, rp, "per_try_timeout")
		require.NotContains(t, rp, "retriable_request_headers")
		for _, c := range strings.Split(rp["retry_on"].(string), ",") {
			require.Contains(t, []string{"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}, c, "HTTP-only condition %q", c)
		}
	}
	def := at(t, routeWithPrefix(t, routes, "/", false), "route").(obj)
	require.Equal(t, "unavailable", at(t, def, "retry_policy", "retry_on"), "5xx and reset are dropped")
	require.Equal(t, "3s", at(t, def, "max_stream_duration", "max_stream_duration"))
	buy := at(t, routeWithPrefix(t, routes, "/buy", false), "route").(obj)
	require.NotContains(t, buy, "retry_policy", "attempts 0: no policy, never num_retries 0")

	// gRPC ignores HTTPFault.headers: the tagged calls get a route of their own.
	tagged := routeWithPrefix(t, routes, "/", true)
	require.Equal(t, "x-game-day", at(t, tagged, "match", "headers", 0, "name"))
	require.Contains(t, tagged, "typed_per_filter_config")
	require.NotContains(t, routeWithPrefix(t, routes, "/", false), "typed_per_filter_config")

	// Localities carry weights: the sum of their endpoints'.
	cla := named(t, out.Endpoints, "cluster_name", "shop")
	weights := map[string]float64{}
	for _, l := range at(t, cla, "endpoints").([]any) {
		weights[at(t, l, "locality", "zone").(string)] = at(t, l, "load_balancing_weight").(float64)
	}
	require.Equal(t, map[string]float64{"z1": 4, "z2": 1}, weights)

	// Only max_requests of the bulkhead, and no budget, health check or
	// protocol options for gRPC.
	shop := named(t, out.Clusters, "name", "shop")
	require.Equal(t, obj{"max_requests": float64(128)}, at(t, shop, "circuit_breakers", "thresholds", 0))
	require.NotContains(t, shop, "health_checks")
	require.NotContains(t, shop, "typed_extension_protocol_options")
}

func TestRenderYAMLIsTheDefault(t *testing.T) {
	r := bulwarkctl(t, "", "render", "-f", "testdata/render/mesh.yaml", "--service", "web")
	require.Equal(t, exitOK, r.code, r.stderr)
	var doc map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(r.stdout), &doc))
	require.ElementsMatch(t, []string{"listeners", "routes", "clusters", "endpoints"}, keys(doc))
	require.Contains(t, r.stdout, "name: shop~fallback\n")
	require.Contains(t, r.stdout, "traffic_direction: OUTBOUND\n", "the envoy flavor")
}

func TestRenderReportsProblemsAndExits1(t *testing.T) {
	r := bulwarkctl(t, "", "render", "-f", "testdata/render/missing-fallback.yaml", "--service", "lone")
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, `services[lone].fallback: service "nowhere" does not exist; the fallback is dropped`)
	require.Contains(t, r.stdout, "name: lone\n", "what could be rendered is printed")
	require.NotContains(t, r.stdout, "lone~fallback")
}

func TestRenderInvalidInputIsNotRendered(t *testing.T) {
	r := bulwarkctl(t, "", "render", "-f", "testdata/invalid/unknown-and-range.yaml", "--service", "payments")
	require.Equal(t, exitFailed, r.code)
	require.Empty(t, r.stdout)
	require.Contains(t, r.stderr, "spec.timeouts.conect: unknown field")
}

func TestRenderUnknownServiceWarns(t *testing.T) {
	r := bulwarkctl(t, "", "render", "-f", "testdata/render/mesh.yaml", "--service", "stranger")
	require.Equal(t, exitOK, r.code)
	require.Contains(t, r.stderr, `service "stranger" is not defined`)
	require.Contains(t, r.stdout, "name: shop-static\n", "an unknown caller receives every service")
}

func TestRenderUsage(t *testing.T) {
	cases := map[string]struct {
		args []string
		want string
	}{
		"missing -f":      {[]string{"render", "--service", "web"}, "-f is required"},
		"missing service": {[]string{"render", "-f", "testdata/valid"}, "--service is required"},
		"bad flavor":      {[]string{"render", "-f", "testdata/valid", "--service", "web", "--flavor", "nginx"}, `--flavor must be envoy or grpc (got "nginx")`},
		"bad output":      {[]string{"render", "-f", "testdata/valid", "--service", "web", "-o", "xml"}, "-o must be yaml or json"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := inProcess("", tc.args...)
			require.Equal(t, exitUsage, r.code, r.stderr)
			require.Contains(t, r.stderr, tc.want)
			require.Contains(t, r.stderr, "Usage: bulwarkctl render")
		})
	}
	r := bulwarkctl(t, "", "help", "render")
	require.Equal(t, exitOK, r.code)
	require.Contains(t, r.stdout, "-flavor")
}

// TestRenderExamples renders the example mesh for every service and flavor:
// it must render without a single problem.
func TestRenderExamples(t *testing.T) {
	for _, svc := range []string{"frontend", "checkout", "payments", "payments-static", "inventory"} {
		for _, flavor := range []string{"envoy", "grpc"} {
			t.Run(fmt.Sprintf("%s/%s", svc, flavor), func(t *testing.T) {
				r := inProcess("", "render", "-f", examplesDir, "--service", svc, "--flavor", flavor)
				require.Equal(t, exitOK, r.code, r.stderr)
				require.Empty(t, r.stderr)
			})
		}
	}
	// checkout calls payments (and its fallback) and inventory, nothing else.
	out := renderJSON(t, examplesDir, "checkout", "envoy")
	var clusters []string
	for _, c := range out.Clusters {
		clusters = append(clusters, c["name"].(string))
	}
	require.Equal(t, []string{"inventory", "payments", "payments-static", "payments~fallback"}, clusters)
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
