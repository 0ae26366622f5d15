package limits

import (
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
)

// ReadBufferSize is the per-connection read buffer of the xDS server:
// requests are small, and gRPC's default of 32 KiB per connection is most
// of what an idle proxy costs.
const ReadBufferSize = 4 << 10

// Watchdog closes the connection of a stream whose send waited longer than
// Timeout: gRPC queues one response beyond a stream's flow-control window
// and the next send waits for the proxy to read. Serve through Wrap, and
// install Intercept as the server's stream interceptor.
type Watchdog struct {
	// Timeout is how long one send may wait.
	Timeout time.Duration
	// OnStall is told of each connection closed (for logs and metrics).
	OnStall func(addr string, after time.Duration)

	conns *connSet
}

// NewWatchdog returns a watchdog with the given send timeout.
func NewWatchdog(timeout time.Duration, onStall func(addr string, after time.Duration)) *Watchdog {
	return &Watchdog{Timeout: timeout, OnStall: onStall, conns: newConnSet()}
}

// Wrap records every connection lis accepts, so a stalled one can be closed.
func (w *Watchdog) Wrap(lis net.Listener) net.Listener { return w.conns.wrap(lis) }

// Intercept is the stream interceptor that arms a timer around each send:
// gRPC's SendMsg blocks while the proxy's flow-control window is full, and
// a proxy that never reads would hold its response (and the stream's
// goroutine) for ever. Past Timeout its connection is closed.
func (w *Watchdog) Intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	addr := ""
	if p, ok := peer.FromContext(ss.Context()); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	return handler(srv, &watchedStream{ServerStream: ss, w: w, addr: addr})
}

type watchedStream struct {
	grpc.ServerStream
	w    *Watchdog
	addr string
}

// SendMsg sends with a watchdog.
func (s *watchedStream) SendMsg(m any) error {
	t := time.AfterFunc(s.w.Timeout, func() { s.w.stalled(s.addr) })
	err := s.ServerStream.SendMsg(m)
	t.Stop()
	return err
}

// stalled closes the connection of a proxy that stopped reading.
func (w *Watchdog) stalled(addr string) {
	if !w.conns.close(addr) {
		return
	}
	if w.OnStall != nil {
		w.OnStall(addr, w.Timeout)
	}
}

// connSet keeps the server's connections by remote address, so that the
// one of a stalled stream can be closed.
type connSet struct {
	mu    sync.Mutex
	conns map[string]net.Conn
}

func newConnSet() *connSet { return &connSet{conns: map[string]net.Conn{}} }

func (c *connSet) wrap(lis net.Listener) net.Listener { return &trackedListener{Listener: lis, set: c} }

// close closes the connection from addr; it reports whether there was one.
func (c *connSet) close(addr string) bool {
	c.mu.Lock()
	conn := c.conns[addr]
	delete(c.conns, addr)
	c.mu.Unlock()
	if conn == nil {
		return false
	}
	conn.Close()
	return true
}

type trackedListener struct {
	net.Listener
	set *connSet
}

// Accept records every connection until it is closed.
func (l *trackedListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	addr := conn.RemoteAddr().String()
	tc := &trackedConn{Conn: conn, set: l.set, addr: addr}
	l.set.mu.Lock()
	l.set.conns[addr] = tc
	l.set.mu.Unlock()
	return tc, nil
}

type trackedConn struct {
	net.Conn
	set  *connSet
	addr string
	once sync.Once
}

// Close forgets the connection.
func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.set.mu.Lock()
		if c.set.conns[c.addr] == c {
			delete(c.set.conns, c.addr)
		}
		c.set.mu.Unlock()
	})
	return c.Conn.Close()
}
