// Package controlplane wires Bulwark together: the store's watch, debounced
// builds of one snapshot per proxy group, the ADS server, proxy status,
// health, metrics and the admin API.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

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
	tokens  tokens // nil without --token-file
	cache   *guardedCache
	tracker *tracker
	builder *builder
	loader  *loader
	health  *health
	status  *statusWriter
	metrics *metrics
	sync    *dirSync // nil without --sync-dir

	xds      *grpc.Server
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
	ts, err := loadTokens(cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{cfg: cfg, tokens: ts, metrics: newMetrics(), cache: newGuardedCache()}
	cp.tracker = newTracker(cfg.Replica, cp.cache, cp.metrics)
	cp.builder = newBuilder(cfg.Logger, cp.cache, cp.tracker, cp.metrics)
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
		})
		if err != nil {
			return fmt.Errorf("embedded etcd: %w", err)
		}
		maxOps = embedded.DefaultMaxTxnOps
		cp.client, err = cp.etcd.Client()
		log.Info("embedded etcd started", "client", cp.etcd.Endpoints(), "data-dir", cp.cfg.DataDir)
	} else {
		cp.client, err = clientv3.New(clientv3.Config{
			Endpoints:   cp.cfg.EtcdEndpoints,
			DialTimeout: 5 * time.Second,
			Logger:      nopZap(),
		})
	}
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	cp.store = store.New(cp.client, store.Options{
		Prefix: cp.cfg.Prefix, MaxTxnOps: maxOps, Logger: log,
		// The status lease ended (etcd was away too long): write it all again.
		OnStatusLost: func(string) {
			for _, p := range cp.tracker.Proxies() {
				cp.status.mark(p.ID)
			}
		},
	})

	cp.health = &health{store: cp.store, grace: cp.cfg.StoreGrace, metrics: cp.metrics, log: log}
	cp.status = &statusWriter{store: cp.store, replica: cp.cfg.Replica, tracker: cp.tracker, log: log, dirty: map[string]bool{}}
	cp.tracker.onDirty = cp.status.mark
	cp.tracker.onConnect = func(k GroupKey) { cp.builder.ensure(ctx, k) }
	cp.loader = &loader{
		log: log, store: cp.store, builder: cp.builder,
		validate: policies.ValidateOptions{MaxExperimentDuration: cp.cfg.MaxExperimentDuration, MaxFaultPercent: cp.cfg.MaxFaultPercent},
		debounce: cp.cfg.Debounce, maxDelay: cp.cfg.MaxDelay,
	}

	if cp.cfg.SyncDir != "" {
		if cp.sync, err = newDirSync(cp, cp.cfg.SyncDir); err != nil {
			return err
		}
	}
	if cp.xdsLis, err = listen("xds", cp.cfg.XDSAddr); err != nil {
		return err
	}
	if cp.xds, err = newXDSServer(ctx, cp.cfg, cp.cache, cp.tracker); err != nil {
		return err
	}
	if cp.adminLis, err = listen("admin", cp.cfg.AdminAddr); err != nil {
		return err
	}
	handler, err := cp.adminHandler()
	if err != nil {
		return err
	}
	cp.admin = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}

	cp.goLoop(func() { cp.health.watch(ctx, time.Second) })
	cp.goLoop(func() { cp.status.run(ctx, 500*time.Millisecond) })
	cp.goLoop(func() {
		if err := cp.loader.run(ctx); err != nil && ctx.Err() == nil {
			log.Error("store loader stopped", "err", err)
		}
	})
	cp.goLoop(func() { cp.sweepGroups(ctx) })
	if cp.sync != nil {
		cp.goLoop(func() { cp.sync.run(ctx) })
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
			cp.builder.sweep(cp.tracker.Groups(), cp.cfg.GroupIdle, now)
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
