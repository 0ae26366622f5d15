package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// sample is one finished call (for a caller) or one arrival (for an upstream).
type sample struct {
	at      time.Time
	latency time.Duration
	code    string // "" for success, else the gRPC code or HTTP status
}

// window keeps the samples of the last span: the readout's numbers are
// always about the last few seconds, so a policy change shows within them.
type window struct {
	span time.Duration
	mu   sync.Mutex
	s    []sample
}

func newWindow(span time.Duration) *window { return &window{span: span} }

func (w *window) add(s sample) {
	now := time.Now()
	s.at = now
	w.mu.Lock()
	defer w.mu.Unlock()
	w.prune(now)
	w.s = append(w.s, s)
}

// prune drops samples older than the span; w.mu is held.
func (w *window) prune(now time.Time) {
	i := 0
	for i < len(w.s) && now.Sub(w.s[i].at) > w.span {
		i++
	}
	if i > 0 {
		w.s = append(w.s[:0], w.s[i:]...)
	}
}

// samples returns a copy of the samples of the last span.
func (w *window) samples() []sample {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.prune(time.Now())
	return slices.Clone(w.s)
}

// callerStats sums a caller's window up.
func callerStats(name, via string, span time.Duration, ss []sample) CallerStats {
	st := CallerStats{Name: name, Via: via, Calls: len(ss), RPS: float64(len(ss)) / span.Seconds(), Errors: map[string]int{}}
	if len(ss) == 0 {
		return st
	}
	lat := make([]time.Duration, 0, len(ss))
	ok := 0
	for _, s := range ss {
		lat = append(lat, s.latency)
		if s.code == "" {
			ok++
		} else {
			st.Errors[s.code]++
		}
	}
	slices.Sort(lat)
	st.Success = 100 * float64(ok) / float64(len(ss))
	st.P50, st.P90, st.P99 = ms(percentile(lat, 50)), ms(percentile(lat, 90)), ms(percentile(lat, 99))
	return st
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 × n)
	return sorted[max(rank, 1)-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// caller sends calls to one service at a steady rate, each with the
// application's own deadline, and records how they end. The rate does not
// depend on how long calls take (an open loop), as with real users: a slow
// upstream shows as latency, not as fewer calls.
type caller struct {
	name     string // the service called
	via      string // how: "proxyless gRPC" or "Envoy"
	rate     int    // calls per second
	deadline time.Duration
	do       func(ctx context.Context) error
	win      *window
	close    func()
}

// maxInFlight bounds a caller's concurrent calls so that a stuck upstream
// cannot pile up goroutines: rate × deadline stays below it by default.
const maxInFlight = 256

func (c *caller) run(ctx context.Context) {
	tick := time.NewTicker(time.Second / time.Duration(c.rate))
	defer tick.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxInFlight)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			c.win.add(sample{code: "TooManyInFlight"})
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cctx, cancel := context.WithTimeout(ctx, c.deadline)
			defer cancel()
			start := time.Now()
			err := c.do(cctx)
			if ctx.Err() != nil {
				return // the demo is stopping: not a result
			}
			c.win.add(sample{latency: time.Since(start), code: codeOf(err)})
		}()
	}
}

// codeOf names how a call ended: "" for success.
func codeOf(err error) string {
	if err == nil {
		return ""
	}
	var he httpError
	if errors.As(err, &he) {
		return fmt.Sprintf("HTTP %d", int(he))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "DeadlineExceeded"
	}
	if s, ok := status.FromError(err); ok {
		return s.Code().String()
	}
	return "Unavailable"
}

// newGRPCCaller dials xds:///service: gRPC-Go's xDS resolver reads the
// bootstrap (GRPC_XDS_BOOTSTRAP, or the resolver given in opts) and gets
// listeners, routes, clusters and endpoints from the demo's control plane.
func newGRPCCaller(service string, rate int, deadline time.Duration, win time.Duration, opts ...grpc.DialOption) (*caller, error) {
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// An upstream that comes back is used again within a second or two:
		// gRPC's default reconnect backoff grows to two minutes.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
	}, opts...)
	cc, err := grpc.NewClient("xds:///"+service, opts...)
	if err != nil {
		return nil, fmt.Errorf("caller of %s: %w", service, err)
	}
	client := testgrpc.NewTestServiceClient(cc)
	return &caller{
		name: service, via: "proxyless gRPC", rate: rate, deadline: deadline, win: newWindow(win),
		do: func(ctx context.Context) error {
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			return err
		},
		close: func() { cc.Close() },
	}, nil
}

// httpError is a non-2xx answer.
type httpError int

func (e httpError) Error() string { return fmt.Sprintf("HTTP %d", int(e)) }

// newHTTPCaller sends GET / with Host: service to an Envoy sidecar's
// outbound listener (listener is its host:port).
func newHTTPCaller(service, listener string, rate int, deadline time.Duration, win time.Duration) *caller {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: tr}
	return &caller{
		name: service, via: "Envoy " + listener, rate: rate, deadline: deadline, win: newWindow(win),
		do: func(ctx context.Context) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+listener+"/", nil)
			if err != nil {
				return err
			}
			req.Host = service
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode/100 != 2 {
				return httpError(resp.StatusCode)
			}
			return nil
		},
		close: tr.CloseIdleConnections,
	}
}
