// Package controlplane wires one Bulwark replica together: it opens the
// store (starting an embedded etcd when no endpoints are given), builds the
// parts of its sub-packages and connects them, runs their loops, and stops
// them in order. It owns the configuration (Config), the store's health
// for readiness, and the wiring; the work is in the sub-packages:
//
//	api        the admin API's request and response bodies (shared with bulwarkctl)
//	metrics    every Prometheus metric of a replica
//	xdsserver  ADS serving: groups, NACK guard, shared answers, sealed resources, tracker
//	snapshot   store watch → debounce → resolve/translate → publish, per proxy group
//	fleet      proxy status persisted per replica and merged into the fleet view
//	apply      single writes and atomic bundle applies with conflict checks
//	audit      the resilience checklist
//	adminapi   the REST API over small interfaces
//	ui         the web console under /ui/, embedded files over the REST API
//	gitops     the directory sync, through an applier
//
// Only cmd/ imports this package.
package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bulwarkmesh/bulwark/controlplane/adminapi"
	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/controlplane/experiments"
	"github.com/bulwarkmesh/bulwark/controlplane/fleet"
	"github.com/bulwarkmesh/bulwark/controlplane/gitops"
	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/controlplane/prom"
	"github.com/bulwarkmesh/bulwark/controlplane/recommend"
	"github.com/bulwarkmesh/bulwark/controlplane/snapshot"
	"github.com/bulwarkmesh/bulwark/controlplane/writelog"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/embedded"
)

// ControlPlane is one Bulwark replica.
type ControlPlane struct {
	cfg Config

	etcd    *embedded.Server // nil with an external etcd
	client  *clientv3.Client
	store   *store.Store
	tokens  adminapi.Tokens // nil without --token-file
	cache   *xdsserver.Cache
	tracker *xdsserver.Tracker
	builder *snapshot.Builder
	loader  *snapshot.Loader
	health  *health
	status  *fleet.Writer
	view    *fleet.View
	metrics *metrics.Metrics
	applier *apply.Applier
	sync    *gitops.Sync        // nil without --sync-dir
	prom    *prom.Client        // nil without --prometheus-url
	runner  *experiments.Runner // nil without --prometheus-url
	queries prom.Templates
	duties  *duties

	api      *adminapi.Server
	xds      *xdsserver.Server
	xdsLis   net.Listener
	admin    *http.Server
	adminLis net.Listener

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New checks the configuration and prepares a control plane; Start runs it.
func New(cfg Config) (*ControlPlane, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Replica == "" {
		host, _ := os.Hostname()
		cfg.Replica = host + "-" + strconv.Itoa(os.Getpid())
	}
	// Read the token file before anything starts, so a bad one fails fast.
	ts, err := adminapi.LoadTokens(cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{cfg: cfg, tokens: ts, metrics: metrics.New(xdsserver.TypeLabels()...), cache: xdsserver.NewCache()}
	cp.queries, err = prom.LoadTemplates(cfg.PrometheusQueries)
	if err != nil {
		return nil, err
	}
	if cfg.Prometheus.URL != "" {
		if cp.prom, err = prom.New(cfg.Prometheus); err != nil {
			return nil, err
		}
	}
	cp.tracker = xdsserver.NewTracker(cfg.Replica, cp.cache, cp.metrics, cfg.Logger)
	cp.builder = snapshot.NewBuilder(cfg.Logger, cp.cache, cp.tracker, cp.metrics)
	cp.metrics.CountExperiments(func() int {
		if set, _ := cp.builder.Set(); set != nil {
			return len(set.Experiments)
		}
		return 0
	})
	return cp, nil
}

// Run starts a control plane and serves until ctx ends, then stops gracefully.
func Run(ctx context.Context, cfg Config) error {
	cp, err := New(cfg)
	if err != nil {
		return err
	}
	if err := cp.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	cp.Stop()
	return nil
}

// Start opens the store (starting the embedded etcd when no endpoints are
// configured), the xDS and admin listeners, and the background loops.
func (cp *ControlPlane) Start(ctx context.Context) (err error) {
	log := cp.cfg.Logger
	ctx, cp.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cp.Stop()
		}
	}()

	maxOps := store.DefaultMaxTxnOps
	if len(cp.cfg.EtcdEndpoints) == 0 {
		cp.etcd, err = embedded.Start(ctx, embedded.Config{
			DataDir:      cp.cfg.DataDir,
			ListenClient: cp.cfg.EmbeddedEtcdListen,
			ListenPeer:   cp.cfg.EmbeddedEtcdPeer,
			MaxTxnOps:    embedded.DefaultMaxTxnOps,
			Logger:       etcdLogger(log),
		})
		if err != nil {
			return err // its errors begin with "embedded etcd"
		}
		maxOps = embedded.DefaultMaxTxnOps
		cp.client, err = cp.etcd.Client()
		log.Info("embedded etcd started", "client", cp.etcd.Endpoints(), "data-dir", cp.cfg.DataDir)
	} else {
		var etcdTLS *tls.Config
		if cp.cfg.EtcdCA != "" || cp.cfg.EtcdCert != "" {
			info := transport.TLSInfo{TrustedCAFile: cp.cfg.EtcdCA, CertFile: cp.cfg.EtcdCert, KeyFile: cp.cfg.EtcdKey}
			if etcdTLS, err = info.ClientConfig(); err != nil {
				return fmt.Errorf("etcd TLS: %w", err)
			}
		}
		cp.client, err = clientv3.New(clientv3.Config{
			Endpoints:   cp.cfg.EtcdEndpoints,
			DialTimeout: 5 * time.Second,
			TLS:         etcdTLS,
			Logger:      nopZap(),
		})
	}
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	cp.store = store.New(cp.client, store.Options{
		Prefix: cp.cfg.Prefix, MaxTxnOps: maxOps, Logger: log,
		// The status lease ended (etcd was away too long): write it all again.
		OnStatusLost: func(string) { cp.status.MarkAll() },
	})

	validate := policies.ValidateOptions{MaxExperimentDuration: cp.cfg.MaxExperimentDuration, MaxFaultPercent: cp.cfg.MaxFaultPercent}
	cp.health = &health{store: cp.store, grace: cp.cfg.StoreGrace, metrics: cp.metrics, log: log, built: cp.builder.Built,
		stuck: cp.builder.Stuck, stuckAfter: cp.cfg.PublishStuckAfter}
	cp.status = fleet.NewWriter(cp.store, cp.cfg.Replica, cp.tracker, log)
	cp.tracker.OnDirty = cp.status.Mark
	cp.tracker.OnReject = cp.status.MarkRejected
	cp.view = fleet.NewView(cp.cfg.Replica, cp.tracker, cp.store, func() (bool, string) {
		up, _, reason := cp.health.StoreState()
		return up, reason
	})
	cp.tracker.OnConnect = func(k xdsserver.GroupKey) { cp.builder.Ensure(ctx, k) }
	cp.loader = snapshot.NewLoader(snapshot.LoaderConfig{
		Log: log, Store: cp.store, Builder: cp.builder, Validate: validate,
		Debounce: cp.cfg.Debounce, MaxDelay: cp.cfg.MaxDelay,
	})
	cp.applier = apply.New(cp.store, validate)
	// Every resource write, from the API or the directory sync, goes
	// through the write history.
	writes := writelog.New(cp.applier, cp.store, writelog.DefaultKeep, log)

	if cp.cfg.SyncDir != "" {
		cp.sync, err = gitops.New(gitops.Config{Dir: cp.cfg.SyncDir, Applier: writes, Revision: cp.builder.Revision, Metrics: cp.metrics, Log: log, Resync: cp.cfg.SyncResync})
		if err != nil {
			return err
		}
	}
	if cp.xdsLis, err = listen("xds", cp.cfg.XDSAddr); err != nil {
		return err
	}
	tlsCfg := xdsserver.TLS{CertFile: cp.cfg.TLSCert, KeyFile: cp.cfg.TLSKey, ClientCA: cp.cfg.XDSClientCA}
	if cp.xds, err = xdsserver.NewServer(ctx, tlsCfg, cp.cache, cp.tracker, xdsserver.SendTimeout(cp.cfg.XDSSendTimeout)); err != nil {
		return err
	}
	if cp.adminLis, err = listen("admin", cp.cfg.AdminAddr); err != nil {
		return err
	}
	deps := adminapi.Deps{
		Store: cp.store, Applier: writes, History: writes, Fleet: cp.view,
		Builds: cp.builder, Health: cp.health, Tokens: cp.tokens, Replica: cp.cfg.Replica, Logger: log,
		Metrics:     promhttp.HandlerFor(cp.metrics.Registry, promhttp.HandlerOpts{}),
		EnablePprof: cp.cfg.EnablePprof,
	}
	if cp.sync != nil {
		deps.Sync = cp.sync.Status
	}
	if cp.prom != nil {
		cp.runner = experiments.New(experiments.Config{Store: cp.store, Querier: cp.prom, Log: log, Tick: cp.cfg.SteadyStateTick,
			Evaluated: func(failed, unknown, aborted bool) {
				cp.metrics.SteadyStateEvaluated(failed, unknown, aborted, cp.prom.Status().Up)
			}})
		deps.SteadyState, deps.Prometheus = cp.runner, cp.prom.Status
		deps.Recommender = &recommend.Recommender{Q: cp.prom, T: cp.queries}
		deps.Circuits = func(ctx context.Context, svcs []string) map[string]api.CircuitState {
			return cp.prom.Circuits(ctx, cp.queries, svcs)
		}
	}
	cp.duties = newDuties(cp.client, cp.store.Prefix(), cp.cfg.Replica, cp.metrics, log)
	deps.Leaders = cp.duties.Leaders
	cp.api = adminapi.New(deps)
	cp.admin, cp.adminLis = adminapi.HTTPServer(withConsole(cp.api.Handler()), cp.adminLis, cp.cfg.AdminLimits, log)

	cp.goLoop(func() { cp.health.watch(ctx, time.Second) })
	cp.goLoop(func() { cp.status.Run(ctx, fleet.FlushEvery) })
	cp.goLoop(func() { cp.view.Run(ctx) })
	cp.goLoop(func() {
		if err := cp.loader.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("store loader stopped", "err", err)
		}
	})
	cp.goLoop(func() { cp.applier.Run(ctx) })
	cp.goLoop(func() { cp.sweepGroups(ctx) })
	if cp.sync != nil {
		// One replica at a time applies the directory (see election.go).
		cp.goLoop(func() {
			cp.duties.run(ctx, "sync", func(ctx context.Context) {
				cp.sync.Reset()
				cp.sync.Run(ctx)
			})
		})
	}
	if cp.runner != nil {
		cp.goLoop(func() { cp.runner.Run(ctx) })
	}
	cp.goLoop(func() {
		if err := cp.xds.Serve(cp.xdsLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("xds server stopped", "err", err)
		}
	})
	cp.goLoop(func() {
		var err error
		if cp.cfg.TLSCert != "" {
			err = cp.admin.ServeTLS(cp.adminLis, cp.cfg.TLSCert, cp.cfg.TLSKey)
		} else {
			err = cp.admin.Serve(cp.adminLis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server stopped", "err", err)
		}
	})
	log.Info("bulwark serving", "xds", cp.XDSAddr(), "admin", cp.AdminAddr(), "replica", cp.cfg.Replica)
	return nil
}

func (cp *ControlPlane) goLoop(f func()) {
	cp.wg.Add(1)
	go func() {
		defer cp.wg.Done()
		f()
	}()
}

// sweepGroups drops proxy groups that have had no proxy for GroupIdle.
func (cp *ControlPlane) sweepGroups(ctx context.Context) {
	t := time.NewTicker(min(cp.cfg.GroupIdle/2, time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cp.builder.Sweep(cp.tracker.Groups(), cp.cfg.GroupIdle, now)
		}
	}
}

// Stop ends every stream and loop, then closes the store and the embedded etcd.
func (cp *ControlPlane) Stop() {
	if cp.cancel != nil {
		cp.cancel()
	}
	if cp.admin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = cp.admin.Shutdown(sctx)
		cancel()
	} else if cp.adminLis != nil {
		cp.adminLis.Close()
	}
	if cp.xds != nil {
		// Streams never end by themselves: GracefulStop would wait forever.
		cp.xds.Stop()
	} else if cp.xdsLis != nil {
		cp.xdsLis.Close()
	}
	cp.wg.Wait()
	if cp.store != nil {
		cp.store.Close()
	}
	if cp.client != nil {
		cp.client.Close()
	}
	if cp.etcd != nil {
		cp.etcd.Close()
	}
}

// XDSAddr returns the address the xDS server listens on.
func (cp *ControlPlane) XDSAddr() string { return cp.xdsLis.Addr().String() }

// AdminAddr returns the address the admin API listens on.
func (cp *ControlPlane) AdminAddr() string { return cp.adminLis.Addr().String() }

// Store returns the control plane's store.
func (cp *ControlPlane) Store() *store.Store { return cp.store }

// listen opens a TCP listener with a clear error.
func listen(what, addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", what, addr, err)
	}
	return l, nil
}

func nopZap() *zap.Logger { return zap.NewNop() }
