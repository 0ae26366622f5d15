// Package observability holds Bulwark's dashboards and alerts as code: the
// Grafana dashboard generated from the panel list below (dashboard.json,
// kept in step by its test), and the Prometheus alert rules (alerts.yaml)
// with their promtool unit tests (alerts_test.yaml). docs/prometheus.md
// describes every panel and alert.
//
// It imports nothing of ours; its tests check every query against the
// metrics Bulwark, Envoy, gRPC and etcd really export.
package observability

import (
	"encoding/json"
)

// Panel is one graph of the dashboard.
type Panel struct {
	Title, Description string
	// Unit is Grafana's unit: s, ms, percentunit, reqps, short.
	Unit    string
	Queries []Query
}

// Query is one PromQL expression of a panel and its legend.
type Query struct {
	Expr, Legend string
}

// Row groups panels under a title.
type Row struct {
	Title  string
	Panels []Panel
}

// rateWindow is Grafana's rate interval: 4 scrape intervals, at least.
const rateWindow = "$__rate_interval"

// Rows are the dashboard: the control plane, then the data plane of the
// service chosen in the $service variable (Envoy sidecars and proxyless
// gRPC clients side by side).
func Rows() []Row {
	envoy := `envoy_cluster_name="$service"`
	grpcT := `grpc_target="xds:///$service"`
	q := func(quantile string) string {
		return `histogram_quantile(` + quantile + `, sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket{` + envoy + `}[` + rateWindow + `]))) / 1000`
	}
	g := func(quantile string) string {
		return `histogram_quantile(` + quantile + `, sum by (le) (rate(grpc_client_call_duration_seconds_bucket{` + grpcT + `}[` + rateWindow + `])))`
	}
	return []Row{
		{Title: "Control plane", Panels: []Panel{
			{Title: "Connected proxies", Unit: "short", Description: "Proxies connected to each replica, by flavor (Envoy sidecars, proxyless gRPC clients). A drop is a replica restarting or a network partition; proxies reconnect to any replica.",
				Queries: []Query{{`sum by (flavor) (bulwark_connected_proxies)`, "{{flavor}}"}}},
			{Title: "xDS pushes", Unit: "reqps", Description: "xDS responses sent per second, by resource type. Pushes follow changes; a steady stream without writes means something rewrites the store.",
				Queries: []Query{{`sum by (type) (rate(bulwark_xds_pushes_total[` + rateWindow + `]))`, "{{type}}"}}},
			{Title: "NACKs", Unit: "reqps", Description: "Responses proxies rejected, per second, by resource type. Anything above zero has a runbook: proxies-rejecting-config; GET /v1/proxies names the proxy and the error.",
				Queries: []Query{{`sum by (type) (rate(bulwark_xds_nacks_total[` + rateWindow + `]))`, "{{type}}"}}},
			{Title: "Build time p99", Unit: "s", Description: "The 99th percentile of the time to rebuild every active group's snapshot after a change, and the build failures (each keeps the last good snapshot).",
				Queries: []Query{
					{`histogram_quantile(0.99, sum by (le) (rate(bulwark_build_duration_seconds_bucket[` + rateWindow + `])))`, "build p99"},
					{`sum by (stage) (increase(bulwark_build_failures_total[` + rateWindow + `]))`, "failures {{stage}}"},
				}},
			{Title: "Convergence p99", Unit: "s", Description: "From a store revision being seen to a proxy ACKing config built from it, 99th percentile: the time a policy write takes to reach the fleet (target: under 1 s).",
				Queries: []Query{{`histogram_quantile(0.99, sum by (le) (rate(bulwark_convergence_seconds_bucket[` + rateWindow + `])))`, "convergence p99"}}},
			{Title: "Store up", Unit: "short", Description: "1 when the replica reaches etcd, 0 when not (runbook etcd-unreachable); with it the store revision each replica built from, which should agree across replicas.",
				Queries: []Query{{`min by (instance) (bulwark_store_up)`, "up {{instance}}"}, {`max by (instance) (bulwark_store_revision)`, "revision {{instance}}"}}},
			{Title: "Directory sync", Unit: "short", Description: "With --sync-dir: 1 when the last sync applied, and the failed syncs (each leaves the last good state; runbook sync-failing).",
				Queries: []Query{{`min by (instance) (bulwark_sync_ok)`, "ok {{instance}}"}, {`sum by (instance) (increase(bulwark_sync_failures_total[` + rateWindow + `]))`, "failures {{instance}}"}}},
			{Title: "Steady-state evaluations", Unit: "short", Description: "Evaluations of running experiments' hypotheses by result (ok, failed, unknown), the experiments stopped by their hypothesis, and whether Prometheus answers the control plane.",
				Queries: []Query{
					{`sum by (result) (increase(bulwark_steadystate_evaluations_total[` + rateWindow + `]))`, "{{result}}"},
					{`sum(increase(bulwark_experiments_aborted_total[` + rateWindow + `]))`, "aborted"},
					{`min(bulwark_prometheus_up)`, "prometheus up"},
				}},
		}},
		{Title: "Data plane: $service", Panels: []Panel{
			{Title: "Latency percentiles (Envoy)", Unit: "s", Description: "p50, p99 and p99.9 of the calls Envoy sidecars make to the service (envoy_cluster_upstream_rq_time, in ms, shown in seconds). The request timeout belongs above the p99.9: bulwarkctl recommend computes it.",
				Queries: []Query{{q("0.5"), "p50"}, {q("0.99"), "p99"}, {q("0.999"), "p99.9"}}},
			{Title: "Latency percentiles (gRPC)", Unit: "s", Description: "p50, p99 and p99.9 of the calls proxyless gRPC clients make to xds:///$service (grpc.client.call.duration, retries included), and the p99 of single attempts.",
				Queries: []Query{{g("0.5"), "p50"}, {g("0.99"), "p99"}, {g("0.999"), "p99.9"},
					{`histogram_quantile(0.99, sum by (le) (rate(grpc_client_attempt_duration_seconds_bucket{` + grpcT + `}[` + rateWindow + `])))`, "attempt p99"}}},
			{Title: "Error rate", Unit: "percentunit", Description: "The share of calls that failed: 5xx for Envoy, any status but OK for gRPC, by caller (the scrape job).",
				Queries: []Query{
					{`sum(rate(envoy_cluster_upstream_rq_xx{` + envoy + `,envoy_response_code_class="5"}[` + rateWindow + `])) / sum(rate(envoy_cluster_upstream_rq_xx{` + envoy + `}[` + rateWindow + `]))`, "envoy 5xx"},
					{`sum by (job) (rate(grpc_client_call_duration_seconds_count{` + grpcT + `,grpc_status!="OK"}[` + rateWindow + `])) / sum by (job) (rate(grpc_client_call_duration_seconds_count{` + grpcT + `}[` + rateWindow + `]))`, "grpc {{job}}"},
				}},
			{Title: "Retries", Unit: "reqps", Description: "Retries per second and those refused by the retry budget or the bulkhead (overflow). Retries near 20% of calls, or any overflow, is a retry storm (runbook retry-storm).",
				Queries: []Query{
					{`sum(rate(envoy_cluster_upstream_rq_retry{` + envoy + `}[` + rateWindow + `]))`, "envoy retries"},
					{`sum(rate(envoy_cluster_upstream_rq_retry_overflow{` + envoy + `}[` + rateWindow + `]))`, "envoy overflow"},
					{`sum(rate(grpc_client_attempt_started_total{` + grpcT + `}[` + rateWindow + `])) - sum(rate(grpc_client_call_duration_seconds_count{` + grpcT + `}[` + rateWindow + `]))`, "grpc retries"},
				}},
			{Title: "Circuit state", Unit: "short", Description: "Hosts ejected by outlier detection now (the circuit is open for them) and healthy hosts; healthy at 0 with a fallback means the fallback serves (runbooks circuit-open, dependency-down-fallback).",
				Queries: []Query{
					{`sum(envoy_cluster_outlier_detection_ejections_active{` + envoy + `})`, "ejected"},
					{`min(envoy_cluster_membership_healthy{` + envoy + `})`, "healthy"},
				}},
			{Title: "Timeouts hit", Unit: "reqps", Description: "Calls that ran into their timeout: Envoy's upstream_rq_timeout and gRPC's DEADLINE_EXCEEDED. More than 1% of calls means the timeout is below the p99 (runbook latency-near-timeout).",
				Queries: []Query{
					{`sum(rate(envoy_cluster_upstream_rq_timeout{` + envoy + `}[` + rateWindow + `]))`, "envoy"},
					{`sum(rate(grpc_client_call_duration_seconds_count{` + grpcT + `,grpc_status="DEADLINE_EXCEEDED"}[` + rateWindow + `]))`, "grpc"},
				}},
		}},
	}
}

// Annotation marks running chaos experiments on every graph.
var Annotation = Query{Expr: `sum(bulwark_experiments_running) > 0`, Legend: "chaos experiment running"}

// Dashboard renders the Grafana dashboard JSON.
func Dashboard() ([]byte, error) {
	type target struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
		RefID        string `json:"refId"`
	}
	type panel struct {
		ID          int            `json:"id"`
		Type        string         `json:"type"`
		Title       string         `json:"title"`
		Description string         `json:"description,omitempty"`
		GridPos     map[string]int `json:"gridPos"`
		Targets     []target       `json:"targets,omitempty"`
		FieldConfig map[string]any `json:"fieldConfig,omitempty"`
		Datasource  map[string]any `json:"datasource,omitempty"`
	}
	ds := map[string]any{"type": "prometheus", "uid": "${datasource}"}
	var panels []panel
	id, y := 0, 0
	for _, row := range Rows() {
		id++
		panels = append(panels, panel{ID: id, Type: "row", Title: row.Title, GridPos: map[string]int{"h": 1, "w": 24, "x": 0, "y": y}})
		y++
		for i, p := range row.Panels {
			id++
			var ts []target
			for j, q := range p.Queries {
				ts = append(ts, target{Expr: q.Expr, LegendFormat: q.Legend, RefID: string(rune('A' + j))})
			}
			panels = append(panels, panel{ID: id, Type: "timeseries", Title: p.Title, Description: p.Description,
				GridPos: map[string]int{"h": 8, "w": 12, "x": (i % 2) * 12, "y": y + (i/2)*8}, Targets: ts, Datasource: ds,
				FieldConfig: map[string]any{"defaults": map[string]any{"unit": p.Unit}, "overrides": []any{}}})
		}
		y += (len(row.Panels) + 1) / 2 * 8
	}
	d := map[string]any{
		"title": "Bulwark", "uid": "bulwark", "schemaVersion": 39, "version": 1, "editable": true,
		"time": map[string]string{"from": "now-1h", "to": "now"}, "refresh": "30s",
		"annotations": map[string]any{"list": []any{map[string]any{
			"name": "Chaos experiments", "datasource": ds, "enable": true, "iconColor": "red",
			"expr": Annotation.Expr, "titleFormat": Annotation.Legend, "step": "30s",
		}}},
		"templating": map[string]any{"list": []any{
			map[string]any{"name": "datasource", "type": "datasource", "query": "prometheus"},
			map[string]any{"name": "service", "type": "query", "datasource": ds, "refresh": 2,
				"query": map[string]string{"query": ServiceVariable, "refId": "service"}, "definition": ServiceVariable},
		}},
		"panels": panels,
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// ServiceVariable lists the services for $service: the Envoy clusters and
// the gRPC targets seen.
const ServiceVariable = `label_values(envoy_cluster_upstream_rq_total, envoy_cluster_name)`
