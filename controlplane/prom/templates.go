package prom

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strings"
	"text/template"
	"time"

	"gopkg.in/yaml.v3"
)

// Templates are the data-plane queries, one set per proxy flavor. Each is a
// text/template over Vars that returns an instant vector by the caller
// label; an empty template means the flavor has no such metric.
type Templates struct {
	// CallerLabel is the label that names the calling service: the scrape's
	// job by default (one job per service), or a "service" label.
	CallerLabel string        `yaml:"callerLabel"`
	Envoy       FlavorQueries `yaml:"envoy"`
	GRPC        FlavorQueries `yaml:"grpc"`
}

// FlavorQueries are the queries for one flavor. Latencies are in seconds.
type FlavorQueries struct {
	// Latency is the {{.Quantile}} of call latency over {{.Window}}.
	Latency string `yaml:"latency"`
	// AttemptLatency is the same for a single try (per-try timeout).
	AttemptLatency string `yaml:"attemptLatency"`
	// Requests is how many calls completed over the window.
	Requests string `yaml:"requests"`
	// ErrorRatio is the share of calls that failed, 0–1.
	ErrorRatio string `yaml:"errorRatio"`
	// EjectedHosts is the number of hosts ejected by outlier detection now.
	EjectedHosts string `yaml:"ejectedHosts"`
	// HealthyHosts is the number of healthy hosts now (0 with a fallback
	// means the fallback serves).
	HealthyHosts string `yaml:"healthyHosts"`
	// RetryRate is retries per second.
	RetryRate string `yaml:"retryRate"`
	// RetryOverflowRate is retries per second refused by the budget or the
	// bulkhead.
	RetryOverflowRate string `yaml:"retryOverflowRate"`
}

// Vars fill a template.
type Vars struct {
	Service     string
	Window      string
	Quantile    string
	CallerLabel string
}

// envoyCluster selects the Envoy cluster of a service.
const envoyCluster = `envoy_cluster_name="{{.Service}}"`

// grpcTarget selects calls that gRPC's OpenTelemetry plugin recorded for a
// service dialed as xds:///<service>.
const grpcTarget = `grpc_target="xds:///{{.Service}}"`

// DefaultTemplates are the queries for Envoy's stat names (as its
// Prometheus endpoint exports them; upstream_rq_time is in milliseconds)
// and gRPC's OpenTelemetry metrics as the OpenTelemetry Prometheus exporter
// names them.
func DefaultTemplates() Templates {
	by := "sum by ({{.CallerLabel}})"
	byLe := "sum by ({{.CallerLabel}}, le)"
	return Templates{
		CallerLabel: "job",
		Envoy: FlavorQueries{
			Latency:           `histogram_quantile({{.Quantile}}, ` + byLe + ` (rate(envoy_cluster_upstream_rq_time_bucket{` + envoyCluster + `}[{{.Window}}]))) / 1000`,
			Requests:          by + ` (increase(envoy_cluster_upstream_rq_time_count{` + envoyCluster + `}[{{.Window}}]))`,
			ErrorRatio:        by + ` (rate(envoy_cluster_upstream_rq_xx{` + envoyCluster + `,envoy_response_code_class="5"}[{{.Window}}])) / ` + by + ` (rate(envoy_cluster_upstream_rq_xx{` + envoyCluster + `}[{{.Window}}]))`,
			EjectedHosts:      by + ` (envoy_cluster_outlier_detection_ejections_active{` + envoyCluster + `})`,
			HealthyHosts:      by + ` (envoy_cluster_membership_healthy{` + envoyCluster + `})`,
			RetryRate:         by + ` (rate(envoy_cluster_upstream_rq_retry{` + envoyCluster + `}[{{.Window}}]))`,
			RetryOverflowRate: by + ` (rate(envoy_cluster_upstream_rq_retry_overflow{` + envoyCluster + `}[{{.Window}}]))`,
		},
		GRPC: FlavorQueries{
			Latency:        `histogram_quantile({{.Quantile}}, ` + byLe + ` (rate(grpc_client_call_duration_seconds_bucket{` + grpcTarget + `}[{{.Window}}])))`,
			AttemptLatency: `histogram_quantile({{.Quantile}}, ` + byLe + ` (rate(grpc_client_attempt_duration_seconds_bucket{` + grpcTarget + `}[{{.Window}}])))`,
			Requests:       by + ` (increase(grpc_client_call_duration_seconds_count{` + grpcTarget + `}[{{.Window}}]))`,
			ErrorRatio:     by + ` (rate(grpc_client_call_duration_seconds_count{` + grpcTarget + `,grpc_status!="OK"}[{{.Window}}])) / ` + by + ` (rate(grpc_client_call_duration_seconds_count{` + grpcTarget + `}[{{.Window}}]))`,
			// A retry is an attempt beyond the first of its call.
			RetryRate: by + ` (rate(grpc_client_attempt_started_total{` + grpcTarget + `}[{{.Window}}])) - ` + by + ` (rate(grpc_client_call_duration_seconds_count{` + grpcTarget + `}[{{.Window}}]))`,
		},
	}
}

// LoadTemplates reads a YAML file of templates over the defaults: a field
// the file sets replaces the default, one it leaves out keeps it. Unknown
// fields and templates that do not parse are errors naming the field.
func LoadTemplates(path string) (Templates, error) {
	t := DefaultTemplates()
	if path == "" {
		return t, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return t, fmt.Errorf("--prometheus-queries: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		return t, fmt.Errorf("--prometheus-queries %s: %w", path, err)
	}
	return t, t.check()
}

// check parses every template with sample variables.
func (t Templates) check() error {
	if t.CallerLabel == "" {
		return fmt.Errorf("callerLabel: must not be empty")
	}
	for _, f := range []struct {
		name string
		q    FlavorQueries
	}{{"envoy", t.Envoy}, {"grpc", t.GRPC}} {
		rv := reflect.ValueOf(f.q)
		for i := range rv.NumField() {
			name := f.name + "." + rv.Type().Field(i).Tag.Get("yaml")
			if _, err := render(rv.Field(i).String(), Vars{Service: "s", Window: "5m", Quantile: "0.99", CallerLabel: t.CallerLabel}); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

// Render fills a template; an empty template renders empty.
func (t Templates) Render(tmpl string, v Vars) (string, error) {
	if v.CallerLabel == "" {
		v.CallerLabel = t.CallerLabel
	}
	return render(tmpl, v)
}

func render(tmpl string, v Vars) (string, error) {
	if strings.TrimSpace(tmpl) == "" {
		return "", nil
	}
	tp, err := template.New("q").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := tp.Execute(&b, v); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Window renders a duration as a PromQL range ("1h", "90s").
func Window(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", d/time.Hour)
	}
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", max(1, d/time.Second))
}
