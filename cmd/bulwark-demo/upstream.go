package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// Behaviour is what an upstream instance has been told to do: add latency to
// every call, fail a share of them, or be down (nothing listens on its port).
type Behaviour struct {
	Latency time.Duration `json:"latency"`
	// Errors is the percentage of calls that fail: UNAVAILABLE for gRPC,
	// 503 for HTTP.
	Errors float64 `json:"errors"`
	Down   bool    `json:"down"`
}

// String reads like the readout's STATE column: "ok", "latency 1s",
// "errors 50%", "down".
func (b Behaviour) String() string {
	if b.Down {
		return "down"
	}
	s := ""
	if b.Latency > 0 {
		s = "latency " + b.Latency.String()
	}
	if b.Errors > 0 {
		if s != "" {
			s += ", "
		}
		s += "errors " + strconv.FormatFloat(b.Errors, 'f', -1, 64) + "%"
	}
	if s == "" {
		return "ok"
	}
	return s
}

// upstream is one instance of a demo service: a gRPC server (the TestService
// of gRPC's interop tests, answering with its own name as the hostname) or an
// HTTP server, on a fixed loopback port, whose Behaviour can be changed while
// it runs.
type upstream struct {
	name     string // instance name: payments-1
	service  string // payments
	protocol string // grpc or http
	port     int    // fixed once the first listener is open

	mu      sync.Mutex
	b       Behaviour
	grpcSrv *grpc.Server
	httpSrv *http.Server
	served  sync.WaitGroup
	calls   *window // arrivals, for the readout's RPS column
}

// startUpstream opens the instance's listener (port 0 picks one) and serves.
func startUpstream(name, service, protocol string, port int, win time.Duration) (*upstream, error) {
	u := &upstream{name: name, service: service, protocol: protocol, port: port, calls: newWindow(win)}
	if err := u.listen(); err != nil {
		return nil, err
	}
	return u, nil
}

// listen opens the port and starts serving; u.mu is held or u is new.
func (u *upstream) listen() error {
	lis, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(u.port)))
	if err != nil {
		return fmt.Errorf("upstream %s: %w", u.name, err)
	}
	u.port = lis.Addr().(*net.TCPAddr).Port
	u.served.Add(1)
	if u.protocol == "http" {
		srv := &http.Server{Handler: http.HandlerFunc(u.serveHTTP), ReadHeaderTimeout: 5 * time.Second}
		u.httpSrv = srv
		go func() {
			defer u.served.Done()
			_ = srv.Serve(lis)
		}()
		return nil
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, grpcHandler{u: u})
	u.grpcSrv = srv
	go func() {
		defer u.served.Done()
		_ = srv.Serve(lis)
	}()
	return nil
}

// stopServing closes the listener and every connection; u.mu is held.
func (u *upstream) stopServing() {
	if u.grpcSrv != nil {
		u.grpcSrv.Stop()
		u.grpcSrv = nil
	}
	if u.httpSrv != nil {
		_ = u.httpSrv.Close()
		u.httpSrv = nil
	}
	u.served.Wait()
}

// set changes the behaviour; going down closes the port, coming back opens
// it again (the same port).
func (u *upstream) set(b Behaviour) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	was := u.b.Down
	u.b = b
	switch {
	case b.Down && !was:
		u.stopServing()
	case !b.Down && was:
		if err := u.listen(); err != nil {
			u.b.Down = true
			return err
		}
	}
	return nil
}

func (u *upstream) behaviour() Behaviour {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.b
}

// close stops serving for good.
func (u *upstream) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.stopServing()
}

// handle applies the behaviour to one call: it waits the latency (or until
// the caller gives up) and reports whether this call must fail.
func (u *upstream) handle(ctx context.Context) (fail bool, err error) {
	u.calls.add(sample{})
	b := u.behaviour()
	if b.Latency > 0 {
		t := time.NewTimer(b.Latency)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return b.Errors > 0 && rand.Float64()*100 < b.Errors, nil
}

// grpcHandler serves TestService.UnaryCall for an upstream.
type grpcHandler struct {
	testgrpc.UnimplementedTestServiceServer // the demo's callers use UnaryCall only
	u                                       *upstream
}

func (h grpcHandler) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	fail, err := h.u.handle(ctx)
	if err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if fail {
		return nil, status.Errorf(codes.Unavailable, "%s fails on purpose (errors %g%%)", h.u.name, h.u.behaviour().Errors)
	}
	return &testgrpc.SimpleResponse{Hostname: h.u.name}, nil
}

// serveHTTP answers any path with the instance's name, or 503.
func (u *upstream) serveHTTP(w http.ResponseWriter, r *http.Request) {
	fail, err := u.handle(r.Context())
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return
	case fail:
		http.Error(w, fmt.Sprintf("%s fails on purpose (errors %g%%)", u.name, u.behaviour().Errors), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintln(w, u.name)
}
