package api

import (
	"time"

	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// StatusReport is the body of GET /v1/status.
type StatusReport struct {
	Revision int64          `json:"revision"`
	Replica  string         `json:"replica"`
	Ready    bool           `json:"ready"`
	Reasons  []string       `json:"reasons,omitempty"`
	StoreUp  bool           `json:"storeUp"`
	Rollout  Rollout        `json:"rollout"`
	Problems []BuildProblem `json:"problems,omitempty"`
	Sync     *SyncStatus    `json:"sync,omitempty"`
	// Prometheus is the state of the data source of steady-state checks
	// and recommendations.
	Prometheus PrometheusStatus `json:"prometheus"`
	// Partial is true when the rollout may miss or misstate the proxies
	// of other replicas (the store is unreachable); PartialReason says why.
	Partial       bool   `json:"partial"`
	PartialReason string `json:"partialReason,omitempty"`
	// Leaders names, per singleton duty, the replica that holds it.
	Leaders map[string]string `json:"leaders,omitempty"`
}

// Rollout summarises how far the current revision has reached.
type Rollout struct {
	Total     int `json:"total"`
	Converged int `json:"converged"`
	Rejecting int `json:"rejecting"`
	Pending   int `json:"pending"`
}

// BuildProblem is a resource or service left out of a build, with the cause.
type BuildProblem struct {
	Group   string `json:"group,omitempty"`
	Message string `json:"message"`
}

// SyncStatus is the state of the directory sync, shown in /v1/status.
type SyncStatus struct {
	Dir      string      `json:"dir"`
	Source   string      `json:"source"`
	OK       bool        `json:"ok"`
	Error    string      `json:"error,omitempty"`
	LastSync time.Time   `json:"lastSync,omitzero"`
	Revision int64       `json:"revision,omitempty"`
	Items    []ApplyItem `json:"items,omitempty"`
}

// Readiness is the body of /health/ready.
type Readiness struct {
	Ready   bool     `json:"ready"`
	Reasons []string `json:"reasons,omitempty"`
}

// ProxyList is the answer of GET /v1/proxies.
type ProxyList struct {
	Items []ProxyStatus `json:"items"`
	// Partial is true when the list may miss or misstate the proxies of
	// other replicas (the store is unreachable, or their status cannot be
	// followed); PartialReason says why. This replica's proxies are current.
	Partial       bool   `json:"partial"`
	PartialReason string `json:"partialReason,omitempty"`
}

// ProxyStatus is what Bulwark knows of one connected proxy.
type ProxyStatus struct {
	ID          string    `json:"id"`
	Service     string    `json:"service"`
	Flavor      ir.Flavor `json:"flavor"`
	Group       string    `json:"group"`
	Replica     string    `json:"replica"`
	ConnectedAt time.Time `json:"connectedAt"`
	// Protocol is "sotw" or "delta".
	Protocol string `json:"protocol"`
	// Types maps a short type name (listeners, routes, clusters, endpoints)
	// to the proxy's state for it.
	Types map[string]*TypeStatus `json:"types"`
	// Converged is true when the proxy has ACKed its group's current version
	// of every type it subscribes to.
	Converged bool `json:"converged"`
	// Revision is the store revision the proxy's config corresponds to, when
	// every type it ACKed came from one build.
	Revision int64 `json:"revision,omitempty"`
}

// Rejecting reports whether the proxy's last response of some type was a NACK.
func (p *ProxyStatus) Rejecting() bool {
	for _, ts := range p.Types {
		if ts.LastNack != nil && ts.LastNack.Version == ts.Sent {
			return true
		}
	}
	return false
}

// TypeStatus is a proxy's state for one resource type.
type TypeStatus struct {
	Sent          string    `json:"sent,omitempty"`
	Acked         string    `json:"acked,omitempty"`
	AckedRevision int64     `json:"ackedRevision,omitempty"`
	AckedAt       time.Time `json:"ackedAt,omitzero"`
	LastNack      *Nack     `json:"lastNack,omitempty"`
}

// Nack is a rejection a proxy reported.
type Nack struct {
	Version string    `json:"version"`
	Error   string    `json:"error"`
	Time    time.Time `json:"time"`
}

// PrometheusStatus is the state of the Prometheus data source
// (--prometheus-url): whether its last query got an answer, and the last
// error. Without --prometheus-url, Configured is false and everything that
// needs it is off.
type PrometheusStatus struct {
	Configured  bool   `json:"configured"`
	URL         string `json:"url,omitempty"`
	Up          bool   `json:"up"`
	LastSuccess string `json:"lastSuccess,omitempty"`
	LastFailure string `json:"lastFailure,omitempty"`
	Failures    int    `json:"failures,omitempty"`
	Error       string `json:"error,omitempty"`
}
