package xdsserver

import (
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
)

// readBufferSize is the per-connection read buffer: requests are small, and
// gRPC's default of 32 KiB per connection is most of what an idle proxy
// costs.
const readBufferSize = 4 << 10

// Serve serves xDS on lis until Stop.
func (s *Server) Serve(lis net.Listener) error { return s.Server.Serve(s.conns.wrap(lis)) }

// watchSends is the stream interceptor that arms a timer around each send:
// gRPC's SendMsg blocks while the proxy's flow-control window is full, and
// a proxy that never reads would hold its response (and the stream's
// goroutine) for ever. Past sendTimeout its connection is closed.
func (s *Server) watchSends(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	addr := ""
	if p, ok := peer.FromContext(ss.Context()); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	return handler(srv, &watchedStream{ServerStream: ss, s: s, addr: addr})
}

type watchedStream struct {
	grpc.ServerStream
	s    *Server
	addr string
}

// SendMsg sends with a watchdog.
func (w *watchedStream) SendMsg(m any) error {
	t := time.AfterFunc(w.s.sendTimeout, func() { w.s.stalled(w.addr) })
	err := w.ServerStream.SendMsg(m)
	t.Stop()
	return err
}

// stalled closes the connection of a proxy that stopped reading.
func (s *Server) stalled(addr string) {
	if !s.conns.close(addr) {
		return
	}
	if s.tracker != nil {
		s.tracker.admit.stalled(addr, s.sendTimeout)
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
