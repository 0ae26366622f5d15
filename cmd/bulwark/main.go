// Command bulwark is the Bulwark control plane: it stores resilience policies
// in etcd (embedded unless --etcd-endpoints is given), translates them to
// Envoy and gRPC xDS and serves them live over ADS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/bulwarkmesh/bulwark/controlplane"
	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/prom"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errVersion is parseFlags's answer to --version: print it and exit 0.
var errVersion = errors.New("version requested")

func run(args []string, stdout, stderr io.Writer) int {
	cfg, logLevel, logFormat, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errVersion) {
		fmt.Fprintln(stdout, "bulwark", api.BuildVersion())
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "bulwark:", err)
		return 2
	}
	cfg.Logger, err = newLogger(stderr, logLevel, logFormat)
	if err != nil {
		fmt.Fprintln(stderr, "bulwark:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := controlplane.Run(ctx, cfg); err != nil {
		err = explain(err, cfg)
		cfg.Logger.Error("bulwark stopped", "err", err)
		fmt.Fprintln(stderr, "bulwark:", err)
		return 1
	}
	cfg.Logger.Info("bulwark stopped gracefully")
	return 0
}

// parseFlags maps the command line onto a controlplane.Config.
func parseFlags(args []string, stderr io.Writer) (controlplane.Config, string, string, error) {
	var (
		cfg       controlplane.Config
		endpoints string
		logLevel  string
		logFormat string
	)
	fs := flag.NewFlagSet("bulwark", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.XDSAddr, "xds-addr", controlplane.DefaultXDSAddr, "address of the xDS (ADS) server")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", controlplane.DefaultAdminAddr, "address of the admin REST API, health and metrics")
	fs.StringVar(&endpoints, "etcd-endpoints", "", "comma-separated etcd endpoints; empty starts an embedded etcd")
	fs.StringVar(&cfg.EtcdCA, "etcd-ca", "", "CA that signed the external etcd's server certificates (TLS to etcd)")
	fs.StringVar(&cfg.EtcdCert, "etcd-cert", "", "client certificate for the external etcd")
	fs.StringVar(&cfg.EtcdKey, "etcd-key", "", "key for --etcd-cert")
	fs.StringVar(&cfg.DataDir, "data-dir", controlplane.DefaultDataDir, "data directory of the embedded etcd")
	fs.StringVar(&cfg.EmbeddedEtcdListen, "embedded-etcd-listen", controlplane.DefaultEmbeddedEtcdListen, "client address of the embedded etcd")
	fs.StringVar(&cfg.EmbeddedEtcdPeer, "embedded-etcd-peer", controlplane.DefaultEmbeddedEtcdPeer, "peer address of the embedded etcd")
	fs.StringVar(&cfg.Prefix, "prefix", controlplane.DefaultPrefix, "key prefix in etcd")
	fs.StringVar(&cfg.Replica, "replica", "", "name of this replica in proxy status (default host-pid)")
	fs.DurationVar(&cfg.Debounce, "debounce", controlplane.DefaultDebounce, "quiet period after a change before a rebuild")
	fs.DurationVar(&cfg.MaxDelay, "max-delay", controlplane.DefaultMaxDelay, "longest a stream of changes may hold a rebuild back")
	fs.DurationVar(&cfg.StoreGrace, "store-grace", controlplane.DefaultStoreGrace, "how long the store may be unreachable before readiness fails")
	fs.DurationVar(&cfg.GroupIdle, "group-idle", controlplane.DefaultGroupIdle, "how long a proxy group outlives its last proxy")
	fs.DurationVar(&cfg.XDSSendTimeout, "xds-send-timeout", controlplane.DefaultXDSSendTimeout, "how long a response may wait for a proxy to read it before its connection is closed")
	fs.DurationVar(&cfg.PublishStuckAfter, "publish-stuck-after", controlplane.DefaultPublishStuckAfter, "readiness fails when a build or publication runs longer than this")
	fs.DurationVar(&cfg.MaxExperimentDuration, "max-experiment-duration", controlplane.DefaultMaxExperiment, "cap on a chaos experiment's duration")
	fs.Float64Var(&cfg.MaxFaultPercent, "max-fault-percent", controlplane.DefaultMaxFaultPercent, "blast-radius cap: the largest share of calls an experiment may fault")
	fs.StringVar(&cfg.SyncDir, "sync-dir", "", "directory of policy files to apply (with prune) and watch, e.g. a git checkout")
	fs.StringVar(&cfg.TokenFile, "token-file", "", "file of 'token role' lines (roles: viewer, editor); empty disables authentication")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "allow a non-loopback admin address without --token-file")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "certificate for the admin API and the xDS port")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "key for --tls-cert")
	fs.StringVar(&cfg.XDSClientCA, "xds-client-ca", "", "CA that must have signed xDS clients' certificates (mTLS)")
	fs.BoolVar(&cfg.EnablePprof, "enable-pprof", false, "serve /debug/pprof on the admin port")
	fs.StringVar(&cfg.Prometheus.URL, "prometheus-url", "", "Prometheus for steady-state checks and recommendations, such as http://127.0.0.1:9090; empty turns them off")
	fs.StringVar(&cfg.Prometheus.TokenFile, "prometheus-token-file", "", "file holding a bearer token for --prometheus-url")
	fs.StringVar(&cfg.Prometheus.CAFile, "prometheus-ca", "", "CA that signed the certificate of an https --prometheus-url")
	fs.StringVar(&cfg.Prometheus.CertFile, "prometheus-cert", "", "client certificate for --prometheus-url (mTLS)")
	fs.StringVar(&cfg.Prometheus.KeyFile, "prometheus-key", "", "key for --prometheus-cert")
	fs.DurationVar(&cfg.Prometheus.Timeout, "prometheus-timeout", prom.DefaultTimeout, "bound on each Prometheus query")
	fs.StringVar(&cfg.PrometheusQueries, "prometheus-queries", "", "YAML file of query templates over the Envoy and gRPC defaults (docs/prometheus.md)")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return cfg, "", "", err
	}
	if *version {
		return cfg, "", "", errVersion
	}
	if fs.NArg() > 0 {
		return cfg, "", "", fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if endpoints != "" {
		for _, e := range strings.Split(endpoints, ",") {
			if e = strings.TrimSpace(e); e != "" {
				cfg.EtcdEndpoints = append(cfg.EtcdEndpoints, e)
			}
		}
	}
	return cfg, logLevel, logFormat, nil
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, got %q", format)
}
