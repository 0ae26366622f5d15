// Package embedded runs an etcd server inside the Bulwark process, so a single
// binary has a real store with nothing to install. Its client URL is a normal
// etcd endpoint: etcdctl works against it.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Defaults for Config.
const (
	DefaultListenClient    = "127.0.0.1:2379"
	DefaultMaxTxnOps       = 10000            // etcd's own default is 128
	DefaultMaxRequestBytes = 10 * 1024 * 1024 // etcd's own default is 1.5 MiB
	DefaultStartTimeout    = 60 * time.Second
	DefaultCompaction      = time.Hour
)

// Raft log retention of the single-member embedded server (see launch).
const (
	embeddedSnapshotCount  = 200
	embeddedCatchUpEntries = 50
)

// grpcOverhead is the room etcd leaves above MaxRequestBytes for gRPC framing.
const grpcOverhead = 512 * 1024

// Config configures an embedded etcd.
type Config struct {
	// DataDir holds etcd's data; a restart on the same directory keeps it.
	DataDir string
	// ListenClient is host:port for clients (default DefaultListenClient);
	// port 0 picks a free port, which Config() then reports so that a
	// restart binds the same one.
	ListenClient string
	// ListenPeer is host:port for the (unused, single-member) peer listener;
	// empty or port 0 picks a free port on the client host.
	ListenPeer string
	// Logger receives etcd's logs; nil discards them.
	Logger *zap.Logger
	// UnsafeNoFsync skips fsync: for tests only, a crash loses data.
	UnsafeNoFsync bool
	// MaxTxnOps is etcd's --max-txn-ops; default DefaultMaxTxnOps.
	MaxTxnOps uint
	// MaxRequestBytes is etcd's --max-request-bytes; default DefaultMaxRequestBytes.
	MaxRequestBytes uint
	// CompactionRetention keeps this much history before compacting it
	// (etcd's periodic auto-compaction); default DefaultCompaction, negative disables.
	CompactionRetention time.Duration
	// StartTimeout bounds the wait for the server to be ready; default DefaultStartTimeout.
	StartTimeout time.Duration
}

// Server is an embedded etcd. It can be stopped and started again on the
// same data directory and addresses (Stop, Restart) until Close.
type Server struct {
	cfg       Config
	endpoints []string

	mu     sync.Mutex
	etcd   *embed.Etcd // nil while stopped
	closed bool
}

// Start starts etcd and waits until it serves clients. Ports are checked
// first, so a port in use is a clear error rather than a hang.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("embedded etcd: a data directory is required")
	}
	if cfg.ListenClient == "" {
		cfg.ListenClient = DefaultListenClient
	}
	if cfg.MaxTxnOps == 0 {
		cfg.MaxTxnOps = DefaultMaxTxnOps
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.CompactionRetention == 0 {
		cfg.CompactionRetention = DefaultCompaction
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = DefaultStartTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	var err error
	if cfg.ListenClient, err = resolvePort("client", cfg.ListenClient); err != nil {
		return nil, err
	}
	if cfg.ListenPeer == "" {
		host, _, _ := net.SplitHostPort(cfg.ListenClient)
		cfg.ListenPeer = net.JoinHostPort(host, "0")
	}
	if cfg.ListenPeer, err = resolvePort("peer", cfg.ListenPeer); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, endpoints: []string{"http://" + advertised(cfg.ListenClient)}}
	if s.etcd, err = launch(ctx, cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// launch starts etcd with a resolved configuration and waits until it is ready.
func launch(ctx context.Context, cfg Config) (*embed.Etcd, error) {
	ec := embed.NewConfig()
	ec.Name = "bulwark"
	ec.Dir = cfg.DataDir
	ec.ListenClientUrls = []url.URL{{Scheme: "http", Host: cfg.ListenClient}}
	ec.AdvertiseClientUrls = []url.URL{{Scheme: "http", Host: advertised(cfg.ListenClient)}}
	ec.ListenPeerUrls = []url.URL{{Scheme: "http", Host: cfg.ListenPeer}}
	ec.AdvertisePeerUrls = []url.URL{{Scheme: "http", Host: advertised(cfg.ListenPeer)}}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.Logger = "zap"
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(cfg.Logger)
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	ec.MaxTxnOps = cfg.MaxTxnOps
	// etcd keeps every raft entry in memory until a snapshot, taken every
	// SnapshotCount entries, then keeps SnapshotCatchUpEntries for slow
	// followers. A single member has no followers, and proxy status is
	// rewritten continuously: with the defaults (10,000 and 5,000) the
	// process held hundreds of megabytes of old status writes.
	ec.SnapshotCount = embeddedSnapshotCount
	ec.SnapshotCatchUpEntries = embeddedCatchUpEntries
	ec.MaxRequestBytes = cfg.MaxRequestBytes
	if cfg.CompactionRetention > 0 {
		ec.AutoCompactionMode = embed.CompactorModePeriodic
		ec.AutoCompactionRetention = cfg.CompactionRetention.String()
	}

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd in %s (client %s): %w", cfg.DataDir, cfg.ListenClient, err)
	}
	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s failed while starting: %w", cfg.DataDir, err)
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s not ready after %s (is the data directory from another cluster, or its disk too slow?)", cfg.DataDir, cfg.StartTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", ctx.Err())
	}
}

// advertised is the address clients dial for a listen address: loopback
// when it listens on every interface.
func advertised(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// resolvePort checks that addr can be bound and replaces port 0 with a free
// port, so the address stays the same across restarts.
func resolvePort(what, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("embedded etcd: %s address %q: %w", what, addr, err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return "", fmt.Errorf("embedded etcd: cannot listen on %s address %s (in use by another process?): %w", what, addr, err)
	}
	bound := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("embedded etcd: %s address %s: %w", what, addr, err)
	}
	return net.JoinHostPort(host, strconv.Itoa(bound)), nil
}

// Config returns the configuration with every port resolved; starting a new
// Server with it after Close reuses the same data and addresses.
func (s *Server) Config() Config { return s.cfg }

// Endpoints returns the client URLs, for etcd clients.
func (s *Server) Endpoints() []string { return append([]string(nil), s.endpoints...) }

// MaxTxnOps returns the server's limit of operations per transaction, for
// store.Options.MaxTxnOps.
func (s *Server) MaxTxnOps() int { return int(s.cfg.MaxTxnOps) }

// Client returns a new client of this server; the caller closes it.
func (s *Server) Client() (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:          s.Endpoints(),
		DialTimeout:        5 * time.Second,
		DialKeepAliveTime:  10 * time.Second,
		Logger:             s.cfg.Logger,
		MaxCallSendMsgSize: int(s.cfg.MaxRequestBytes) + grpcOverhead,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded etcd client: %w", err)
	}
	return cli, nil
}

// Stop stops etcd and keeps its data; Restart starts it again. Clients with
// open watches or lease keepalives hold etcd's graceful stop for up to its
// request timeout (about 7 s); close them first when you can.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

func (s *Server) stopLocked() {
	if s.etcd == nil {
		return
	}
	s.etcd.Close()
	<-s.etcd.Server.StopNotify()
	s.etcd = nil
}

// Restart stops etcd if it runs and starts it again on the same data
// directory and addresses; existing clients reconnect by themselves.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("embedded etcd: restart after Close")
	}
	s.stopLocked()
	var err error
	if _, err = resolvePort("client", s.cfg.ListenClient); err != nil {
		return err
	}
	s.etcd, err = launch(ctx, s.cfg)
	return err
}

// Close stops etcd for good (see Stop). It may be called more than once.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.stopLocked()
}
