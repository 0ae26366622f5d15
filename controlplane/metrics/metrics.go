// Package metrics defines every Prometheus metric of a control plane
// replica, on a registry of its own so that several replicas can live in one
// test process. Each metric's labels come from closed sets, initialised at
// start so that dashboards and alerts see zeros, not absent series.
//
// It is a leaf: it imports nothing of Bulwark, and every other package of
// the control plane may import it.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are one replica's Prometheus metrics.
type Metrics struct {
	// Registry holds every metric below and the Go and process collectors.
	Registry *prometheus.Registry

	Connected     *prometheus.GaugeVec
	Pushes        *prometheus.CounterVec
	Nacks         *prometheus.CounterVec
	BuildDuration prometheus.Histogram
	BuildFailures *prometheus.CounterVec
	StoreRevision prometheus.Gauge
	StoreUp       prometheus.Gauge
	Convergence   prometheus.Histogram
	Groups        prometheus.Gauge
	Snapshots     *prometheus.CounterVec
	SyncFailures  prometheus.Counter
	SyncOK        prometheus.Gauge
	Refused       *prometheus.CounterVec

	// The steady-state runner (with --prometheus-url).
	SteadyEvaluations  *prometheus.CounterVec
	ExperimentsAborted prometheus.Counter
	PrometheusUp       prometheus.Gauge

	// Leader is 1 for each singleton duty this replica holds.
	Leader *prometheus.GaugeVec
}

// SteadyResults are the values of bulwark_steadystate_evaluations_total's
// "result" label.
var SteadyResults = []string{"ok", "failed", "unknown"}

// Duties are the values of bulwark_leader's "duty" label: the work one
// replica of the fleet does at a time, elected through etcd.
var Duties = []string{"sync"}

// RefusalReasons are the values of bulwark_xds_refused_total's "reason"
// label (see controlplane/xdsserver's limits).
var RefusalReasons = []string{"type", "node-id", "node-cluster", "node-metadata", "outbound", "stalled"}

// BuildStages are the values of bulwark_build_failures_total's "stage"
// label: where a build failed, or "partial" when it left something out.
var BuildStages = []string{"translate", "check", "snapshot", "partial"}

// New returns a replica's metrics; typeLabels are the short names of the
// xDS resource types, the closed set of the "type" label.
func New(typeLabels ...string) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bulwark_connected_proxies", Help: "Proxies Connected to this replica, by flavor.",
		}, []string{"flavor"}),
		Pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_xds_pushes_total", Help: "xDS responses sent, by resource type.",
		}, []string{"type"}),
		Nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_xds_nacks_total", Help: "xDS responses rejected by proxies, by resource type.",
		}, []string{"type"}),
		BuildDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bulwark_build_duration_seconds", Help: "Time to rebuild every active group's snapshot after a change.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		BuildFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_build_failures_total", Help: "Builds that failed and kept the last good snapshot, by stage.",
		}, []string{"stage"}),
		StoreRevision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bulwark_store_revision", Help: "The latest store revision this replica has built from.",
		}),
		StoreUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bulwark_store_up", Help: "1 when the store answers, 0 when it does not.",
		}),
		Convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bulwark_convergence_seconds", Help: "From a store revision being observed to a proxy ACKing config built from it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		Groups: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bulwark_proxy_groups", Help: "Proxy Groups (flavor/service) with a snapshot.",
		}),
		Snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_snapshots_published_total", Help: "Snapshots published, by whether their content changed.",
		}, []string{"changed"}),
		SyncFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulwark_sync_failures_total", Help: "Directory syncs that failed and left the store unchanged.",
		}),
		SyncOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bulwark_sync_ok", Help: "1 when the last directory sync succeeded.",
		}),
	}
	m.Refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulwark_xds_refused_total", Help: "xDS requests refused for going beyond a limit, by reason.",
	}, []string{"reason"})
	for _, r := range RefusalReasons {
		m.Refused.WithLabelValues(r)
	}
	m.SteadyEvaluations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bulwark_steadystate_evaluations_total", Help: "Steady-state evaluations of running experiments, by result (failed: a check out of bounds; unknown: a check could not be read).",
	}, []string{"result"})
	for _, r := range SteadyResults {
		m.SteadyEvaluations.WithLabelValues(r)
	}
	m.ExperimentsAborted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bulwark_experiments_aborted_total", Help: "Experiments stopped because their steady-state hypothesis failed.",
	})
	m.PrometheusUp = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "bulwark_prometheus_up", Help: "1 when the last query to the Prometheus of --prometheus-url got an answer, 0 when not (and without --prometheus-url).",
	})
	m.Registry.MustRegister(m.SteadyEvaluations, m.ExperimentsAborted, m.PrometheusUp)
	m.Leader = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bulwark_leader", Help: "1 when this replica holds a singleton duty (elected through etcd), by duty.",
	}, []string{"duty"})
	for _, d := range Duties {
		m.Leader.WithLabelValues(d)
	}
	m.Registry.MustRegister(m.Refused, m.Connected, m.Pushes, m.Nacks, m.BuildDuration, m.BuildFailures,
		m.StoreRevision, m.StoreUp, m.Convergence, m.Groups, m.Snapshots, m.SyncFailures, m.SyncOK, m.Leader,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, f := range []string{"envoy", "grpc"} {
		m.Connected.WithLabelValues(f)
	}
	for _, t := range typeLabels {
		m.Pushes.WithLabelValues(t)
		m.Nacks.WithLabelValues(t)
	}
	for _, stage := range BuildStages {
		m.BuildFailures.WithLabelValues(stage)
	}
	for _, changed := range []string{"true", "false"} {
		m.Snapshots.WithLabelValues(changed)
	}
	return m
}

// SteadyStateEvaluated counts one steady-state evaluation.
func (m *Metrics) SteadyStateEvaluated(failed, unknown, aborted, prometheusUp bool) {
	switch {
	case failed:
		m.SteadyEvaluations.WithLabelValues("failed").Inc()
	case unknown:
		m.SteadyEvaluations.WithLabelValues("unknown").Inc()
	default:
		m.SteadyEvaluations.WithLabelValues("ok").Inc()
	}
	if aborted {
		m.ExperimentsAborted.Inc()
	}
	if prometheusUp {
		m.PrometheusUp.Set(1)
	} else {
		m.PrometheusUp.Set(0)
	}
}

// CountExperiments exports bulwark_experiments_running, read from count
// at each scrape (the dashboard's annotation of running experiments).
func (m *Metrics) CountExperiments(count func() int) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "bulwark_experiments_running", Help: "Chaos experiments running, as of the last build.",
	}, func() float64 { return float64(count()) }))
}
