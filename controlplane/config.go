package controlplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/adminapi"
	"github.com/bulwarkmesh/bulwark/controlplane/prom"
)

// Config is everything the control plane needs to run. cmd/bulwark fills it
// from flags; tests fill it directly.
type Config struct {
	// XDSAddr is where the ADS server listens (SotW and delta on one port).
	XDSAddr string
	// AdminAddr is where the REST API, health and metrics listen.
	AdminAddr string

	// EtcdEndpoints lists an external etcd cluster. Empty starts an embedded etcd.
	EtcdEndpoints []string
	// EtcdCA verifies the external etcd's server certificates; EtcdCert and
	// EtcdKey are the client certificate presented to it. All PEM files.
	EtcdCA, EtcdCert, EtcdKey string
	// DataDir holds the embedded etcd's data.
	DataDir string
	// EmbeddedEtcdListen is the embedded etcd's client address.
	EmbeddedEtcdListen string
	// EmbeddedEtcdPeer is the embedded etcd's peer address.
	EmbeddedEtcdPeer string
	// Prefix is the key prefix in etcd.
	Prefix string

	// Replica names this replica in proxy status; defaults to host:pid.
	Replica string

	// Debounce is the quiet period after a change before a rebuild.
	Debounce time.Duration
	// MaxDelay bounds how long a stream of changes may hold a rebuild back.
	MaxDelay time.Duration
	// StoreGrace is how long the store may be unreachable before readiness fails.
	StoreGrace time.Duration
	// GroupIdle is how long a proxy group is kept after its last proxy left.
	GroupIdle time.Duration
	// XDSSendTimeout is how long a response may wait for a proxy to read it
	// before the proxy's connection is closed.
	XDSSendTimeout time.Duration
	// PublishStuckAfter is how long a build or publication may run before
	// readiness fails (publishing is stuck: no proxy gets new config).
	PublishStuckAfter time.Duration
	// AdminLimits bound the admin port's connections and request times;
	// zero fields take adminapi.DefaultLimits.
	AdminLimits adminapi.Limits

	// MaxExperimentDuration caps ChaosExperiment.spec.duration.
	MaxExperimentDuration time.Duration
	// MaxFaultPercent caps the share of calls an experiment may fault.
	MaxFaultPercent float64

	// SyncDir, when set, is a directory of policy files applied with prune
	// under source "dir:<path>" and watched for changes.
	SyncDir string
	// SyncResync is how often, at most, the synced directory is applied
	// again when the store drifted from it; 0 is gitops.DefaultResync.
	SyncResync time.Duration

	// TokenFile holds "token role" lines; empty disables authentication.
	TokenFile string
	// Insecure allows listening beyond loopback without a token file.
	Insecure bool
	// TLS for the admin API and the xDS port.
	TLSCert, TLSKey string
	// XDSClientCA, when set, requires xDS clients to present a certificate it signed.
	XDSClientCA string

	// EnablePprof mounts /debug/pprof on the admin port.
	EnablePprof bool

	// Prometheus is the data source of steady-state checks and
	// recommendations; its URL empty turns them off.
	Prometheus prom.Config
	// PrometheusQueries is a YAML file of query templates over the defaults.
	PrometheusQueries string
	// SteadyStateTick is how often the experiment runner looks for due
	// evaluations; 0 is experiments.DefaultTick.
	SteadyStateTick time.Duration

	// Logger receives the control plane's logs.
	Logger *slog.Logger
}

// Defaults for Config.
const (
	DefaultXDSAddr            = "127.0.0.1:18000"
	DefaultAdminAddr          = "127.0.0.1:18080"
	DefaultEmbeddedEtcdListen = "127.0.0.1:2379"
	DefaultEmbeddedEtcdPeer   = "127.0.0.1:2380"
	DefaultPrefix             = "/bulwark"
	DefaultDataDir            = ".bulwark/data"
	DefaultDebounce           = 20 * time.Millisecond
	DefaultMaxDelay           = 200 * time.Millisecond
	DefaultStoreGrace         = 10 * time.Second
	DefaultGroupIdle          = 5 * time.Minute
	DefaultPublishStuckAfter  = 30 * time.Second
	DefaultXDSSendTimeout     = 30 * time.Second
	DefaultMaxExperiment      = time.Hour
	DefaultMaxFaultPercent    = 50.0
)

// withDefaults returns c with its unset fields filled.
func (c Config) withDefaults() Config {
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	set(&c.XDSAddr, DefaultXDSAddr)
	set(&c.AdminAddr, DefaultAdminAddr)
	set(&c.EmbeddedEtcdListen, DefaultEmbeddedEtcdListen)
	set(&c.EmbeddedEtcdPeer, DefaultEmbeddedEtcdPeer)
	set(&c.Prefix, DefaultPrefix)
	set(&c.DataDir, DefaultDataDir)
	setD(&c.Debounce, DefaultDebounce)
	setD(&c.MaxDelay, DefaultMaxDelay)
	setD(&c.StoreGrace, DefaultStoreGrace)
	setD(&c.GroupIdle, DefaultGroupIdle)
	setD(&c.PublishStuckAfter, DefaultPublishStuckAfter)
	setD(&c.XDSSendTimeout, DefaultXDSSendTimeout)
	setD(&c.MaxExperimentDuration, DefaultMaxExperiment)
	if c.MaxFaultPercent == 0 {
		c.MaxFaultPercent = DefaultMaxFaultPercent
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports configuration that cannot work.
func (c Config) Validate() error {
	var errs []error
	if c.MaxDelay < c.Debounce {
		errs = append(errs, fmt.Errorf("--max-delay (%s) must be >= --debounce (%s)", c.MaxDelay, c.Debounce))
	}
	if c.MaxFaultPercent <= 0 || c.MaxFaultPercent > 100 {
		errs = append(errs, fmt.Errorf("--max-fault-percent must be in (0, 100], got %g", c.MaxFaultPercent))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if (c.EtcdCert == "") != (c.EtcdKey == "") {
		errs = append(errs, errors.New("--etcd-cert and --etcd-key go together"))
	}
	if (c.EtcdCA != "" || c.EtcdCert != "") && len(c.EtcdEndpoints) == 0 {
		errs = append(errs, errors.New("--etcd-ca, --etcd-cert and --etcd-key need --etcd-endpoints (they are for an external etcd)"))
	}
	if c.XDSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("--xds-client-ca needs --tls-cert and --tls-key"))
	}
	if c.TokenFile == "" && !c.Insecure && !isLoopback(c.AdminAddr) {
		errs = append(errs, fmt.Errorf("--admin-addr %s is not a loopback address: give --token-file, or --insecure to accept unauthenticated access", c.AdminAddr))
	}
	return errors.Join(errs...)
}

// isLoopback reports whether a listen address binds only loopback.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
