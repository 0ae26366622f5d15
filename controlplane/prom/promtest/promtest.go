// Package promtest runs a real Prometheus server (Debian's prometheus
// package, installed by make deps) for tests: on a loopback port, with a
// generated scrape configuration and a short scrape interval, its data in
// the test's temporary directory. It also serves gRPC's OpenTelemetry
// metrics of a test's clients, as the OpenTelemetry Prometheus exporter
// names them, for that server to scrape.
package promtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats/opentelemetry"
)

// Target is one scrape job: its name (the caller label, "job") and the
// host:port serving /metrics.
type Target struct {
	Job, Addr string
}

// Server is a running Prometheus.
type Server struct {
	URL  string
	addr string
	dir  string
	cmd  *exec.Cmd
	mu   sync.Mutex
	done chan struct{}
}

// New reserves a loopback address for a Prometheus, so that its URL can
// be given to what it will scrape before it starts.
func New(t *testing.T) *Server {
	t.Helper()
	s := &Server{addr: freeAddr(t), dir: t.TempDir()}
	s.URL = "http://" + s.addr
	return s
}

// Start runs Prometheus scraping targets every interval; the test fails
// when the binary is missing (make deps installs it). Stop ends it; the
// test's cleanup does too.
func (s *Server) Start(t *testing.T, interval time.Duration, targets ...Target) {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (make deps installs Debian's prometheus package): %v", err)
	}
	dir := s.dir
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\nscrape_configs:\n", interval, interval)
	for _, tg := range targets {
		fmt.Fprintf(&b, "  - job_name: %q\n    scrape_interval: %s\n    scrape_timeout: %s\n    static_configs:\n      - targets: [%q]\n", tg.Job, interval, interval, tg.Addr)
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+s.addr, "--log.level=warn", "--storage.tsdb.retention.time=1h")
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-s.done:
			t.Fatal("prometheus exited before it was ready")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("prometheus not ready after 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends Prometheus and waits for it; a second call does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Kill()
	<-s.done
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// GRPCMetrics is gRPC's OpenTelemetry instrumentation for a test's
// clients, exported to Prometheus and served on a loopback port.
type GRPCMetrics struct {
	// Addr is the host:port serving /metrics.
	Addr     string
	provider *sdkmetric.MeterProvider
}

// NewGRPCMetrics serves the OpenTelemetry Prometheus exporter of a new
// meter provider; DialOption instruments a client with it.
func NewGRPCMetrics(t *testing.T) *GRPCMetrics {
	t.Helper()
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	m := &GRPCMetrics{provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m.Addr = l.Addr().String()
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() {
		srv.Close()
		m.provider.Shutdown(context.Background())
	})
	return m
}

// DialOption records the client metrics of gRPC's OpenTelemetry plugin
// (grpc.client.call.duration, grpc.client.attempt.duration, ...).
func (m *GRPCMetrics) DialOption() grpc.DialOption {
	return opentelemetry.DialOption(opentelemetry.Options{MetricsOptions: opentelemetry.MetricsOptions{MeterProvider: m.provider}})
}
