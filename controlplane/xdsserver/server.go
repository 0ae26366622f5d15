package xdsserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver/limits"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

const (
	// Keepalive as in go-control-plane's example server: proxies hold their
	// streams for hours, so dead peers must be found by pings, and proxies
	// must be allowed to ping without an active RPC.
	grpcKeepaliveTime    = 30 * time.Second
	grpcKeepaliveTimeout = 5 * time.Second
	grpcKeepaliveMinTime = 30 * time.Second
	// Every proxy holds one ADS stream (a few with per-type streams), all on
	// few connections: the default limit of 100 streams per connection would
	// throttle a multiplexing client.
	grpcMaxConcurrentStreams = 1000000
)

// TLS is the xDS port's transport security; empty serves plaintext.
type TLS struct {
	// CertFile and KeyFile are the server's certificate and key (PEM).
	CertFile, KeyFile string
	// ClientCA, when set, requires proxies to present a certificate it
	// signed (mTLS).
	ClientCA string
}

// Server is the xDS gRPC server. Serve wraps the listener so that a
// connection whose stream stopped reading can be closed (see SendTimeout).
type Server struct {
	*grpc.Server
	watchdog    *limits.Watchdog
	sendTimeout time.Duration
}

// Option tunes NewServer.
type Option func(*Server)

// DefaultSendTimeout is how long one response may wait for a proxy to read
// it before its connection is closed.
const DefaultSendTimeout = 30 * time.Second

// SendTimeout sets how long one response may wait for a proxy to read it.
// A stream that does not read holds a whole serialized response (and its
// stream goroutine) for as long as it does not: past this time the
// connection is closed, logged once per client and counted
// (bulwark_xds_refused_total{reason="stalled"}).
func SendTimeout(d time.Duration) Option { return func(s *Server) { s.sendTimeout = d } }

// NewServer returns a gRPC server with the ADS and per-type discovery
// services, SotW and delta, on one port, answered from cache and followed
// by tr.
func NewServer(ctx context.Context, cfg TLS, cache *Cache, tr *Tracker, options ...Option) (*Server, error) {
	srv := &Server{sendTimeout: DefaultSendTimeout}
	for _, o := range options {
		o(srv)
	}
	srv.watchdog = limits.NewWatchdog(srv.sendTimeout, tr.admit.Stalled)
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(grpcMaxConcurrentStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: grpcKeepaliveTime, Timeout: grpcKeepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: grpcKeepaliveMinTime, PermitWithoutStream: true}),
		// Requests are small; responses are written, not read.
		grpc.ReadBufferSize(limits.ReadBufferSize),
		grpc.StreamInterceptor(srv.watchdog.Intercept),
	}
	if cfg.CertFile != "" {
		creds, err := xdsTLS(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(creds))
	}
	gs := grpc.NewServer(opts...)
	srv.Server = gs
	// Ordered ADS: one response channel per stream and a plain select,
	// instead of a new channel per request and a reflect.Select over them;
	// it also keeps a stream's responses in the order the cache gave them.
	xds := serverv3.NewServer(ctx, cache, tr, sotwv3.WithOrderedADS())
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, xds)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, xds)
	endpointservice.RegisterEndpointDiscoveryServiceServer(gs, xds)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, xds)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, xds)
	return srv, nil
}

// Serve serves xDS on lis until Stop.
func (s *Server) Serve(lis net.Listener) error { return s.Server.Serve(s.watchdog.Wrap(lis)) }

// xdsTLS builds the xDS port's credentials; with a client CA, proxies must
// present a certificate it signed (mTLS).
func xdsTLS(cfg TLS) (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load --tls-cert/--tls-key: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.ClientCA != "" {
		pem, err := os.ReadFile(cfg.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("read --xds-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--xds-client-ca %s holds no PEM certificate", cfg.ClientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(tc), nil
}
