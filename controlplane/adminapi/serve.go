package adminapi

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// Limits bound what clients of the admin port may hold: how long a
// request may take to arrive and to be answered, how long an idle
// keep-alive connection stays open, and how many connections are open at
// once.
type Limits struct {
	// ReadHeader and Read bound the arrival of a request's headers and of
	// the whole request (a 1 MiB body included); Write bounds the answer
	// (a CPU profile of /debug/pprof/profile, 30s by default, fits).
	ReadHeader, Read, Write time.Duration
	// Idle closes keep-alive connections that carry no request for that long.
	Idle time.Duration
	// MaxConns connections are served in full. Past it, Reserve more are
	// accepted and answer /health/live and /health/ready only (everything
	// else gets 503 and the connection closes), so liveness probes keep
	// working while the port is saturated; past MaxConns+Reserve, new
	// connections wait in the kernel's backlog until one closes.
	MaxConns, Reserve int
}

// DefaultLimits are the limits of the admin port.
var DefaultLimits = Limits{
	ReadHeader: 10 * time.Second,
	Read:       30 * time.Second,
	Write:      2 * time.Minute,
	Idle:       90 * time.Second,
	MaxConns:   512,
	Reserve:    32,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.ReadHeader <= 0 {
		l.ReadHeader = d.ReadHeader
	}
	if l.Read <= 0 {
		l.Read = d.Read
	}
	if l.Write <= 0 {
		l.Write = d.Write
	}
	if l.Idle <= 0 {
		l.Idle = d.Idle
	}
	if l.MaxConns <= 0 {
		l.MaxConns = d.MaxConns
	}
	if l.Reserve <= 0 {
		l.Reserve = d.Reserve
	}
	return l
}

// HTTPServer returns the admin port's server for h, with the timeouts of
// lim, and the listener to serve it on: lis wrapped with the connection
// limit of lim. Serve (or ServeTLS) the server on the returned listener.
func HTTPServer(h http.Handler, lis net.Listener, lim Limits, log *slog.Logger) (*http.Server, net.Listener) {
	lim = lim.withDefaults()
	ll := &limitListener{Listener: lis, lim: lim, log: log, slots: make(chan struct{}, lim.MaxConns+lim.Reserve), done: make(chan struct{})}
	srv := &http.Server{
		Handler:           overflowGuard(h, lim.MaxConns),
		ReadHeaderTimeout: lim.ReadHeader,
		ReadTimeout:       lim.Read,
		WriteTimeout:      lim.Write,
		IdleTimeout:       lim.Idle,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tls.Conn); ok {
				c = tc.NetConn()
			}
			if lc, ok := c.(*limitedConn); ok && lc.overflow {
				ctx = context.WithValue(ctx, overflowKey{}, true)
			}
			return ctx
		},
	}
	return srv, ll
}

type overflowKey struct{}

// overflowGuard answers the requests of connections past the limit: health
// only, and every answer closes its connection.
func overflowGuard(h http.Handler, limit int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if over, _ := r.Context().Value(overflowKey{}).(bool); over {
			w.Header().Set("Connection", "close")
			if !strings.HasPrefix(r.URL.Path, "/health/") {
				p := api.NewProblem(http.StatusServiceUnavailable, api.ProblemBusy,
					"the admin port has more than its "+strconv.Itoa(limit)+" connections open; retry later, and reuse connections (keep-alive) instead of opening new ones")
				w.Header().Set("Retry-After", "1")
				api.SendProblem(w, p)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// limitListener counts open connections; see Limits.MaxConns.
type limitListener struct {
	net.Listener
	lim   Limits
	log   *slog.Logger
	slots chan struct{}
	open  atomic.Int64
	// warned is set while the port is past its limit, so that crossing it
	// is logged once, not per connection.
	warned    atomic.Bool
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	n := l.open.Add(1)
	over := n > int64(l.lim.MaxConns)
	if over && l.warned.CompareAndSwap(false, true) {
		l.log.Warn("admin port: connection limit reached; new connections answer health checks only",
			"limit", l.lim.MaxConns, "reserve", l.lim.Reserve)
	}
	return &limitedConn{Conn: c, overflow: over, release: func() {
		if l.open.Add(-1) <= int64(l.lim.MaxConns/2) && l.warned.CompareAndSwap(true, false) {
			l.log.Info("admin port: back under its connection limit", "open", l.open.Load())
		}
		<-l.slots
	}}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitedConn gives its slot back once, when closed.
type limitedConn struct {
	net.Conn
	overflow bool
	once     sync.Once
	release  func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
