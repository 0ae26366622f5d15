package controlplane

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the control plane's Prometheus metrics, on their own registry
// so several control planes can live in one test process.
type metrics struct {
	registry *prometheus.Registry

	connected     *prometheus.GaugeVec
	pushes        *prometheus.CounterVec
	nacks         *prometheus.CounterVec
	buildDuration prometheus.Histogram
	buildFailures *prometheus.CounterVec
	storeRevision prometheus.Gauge
	storeUp       prometheus.Gauge
	convergence   prometheus.Histogram
	groups        prometheus.Gauge
	snapshots     *prometheus.CounterVec
	syncFailures  prometheus.Counter
	syncOK        prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "bulwark_connected_proxies", Help: "Proxies connected to this replica, by flavor.",
		}, []string{"flavor"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_xds_pushes_total", Help: "xDS responses sent, by resource type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_xds_nacks_total", Help: "xDS responses rejected by proxies, by resource type.",
		}, []string{"type"}),
		buildDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bulwark_build_duration_seconds", Help: "Time to rebuild every active group's snapshot after a change.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		buildFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_build_failures_total", Help: "Builds that failed and kept the last good snapshot, by stage.",
		}, []string{"stage"}),
		storeRevision: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bulwark_store_revision", Help: "The latest store revision this replica has built from.",
		}),
		storeUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bulwark_store_up", Help: "1 when the store answers, 0 when it does not.",
		}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "bulwark_convergence_seconds", Help: "From a store revision being observed to a proxy ACKing config built from it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		groups: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bulwark_proxy_groups", Help: "Proxy groups (flavor/service) with a snapshot.",
		}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bulwark_snapshots_published_total", Help: "Snapshots published, by whether their content changed.",
		}, []string{"changed"}),
		syncFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bulwark_sync_failures_total", Help: "Directory syncs that failed and left the store unchanged.",
		}),
		syncOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bulwark_sync_ok", Help: "1 when the last directory sync succeeded.",
		}),
	}
	m.registry.MustRegister(m.connected, m.pushes, m.nacks, m.buildDuration, m.buildFailures,
		m.storeRevision, m.storeUp, m.convergence, m.groups, m.snapshots, m.syncFailures, m.syncOK,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, f := range []string{"envoy", "grpc"} {
		m.connected.WithLabelValues(f)
	}
	for _, t := range shortType {
		m.pushes.WithLabelValues(t)
		m.nacks.WithLabelValues(t)
	}
	return m
}
