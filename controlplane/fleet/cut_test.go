package fleet

import (
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// forwarder relays TCP to a target until cut: then every connection
// closes and new ones are refused, as when the network to etcd is lost,
// while etcd itself runs on.
type forwarder struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	cut    bool
	wg     sync.WaitGroup
}

func newForwarder(t *testing.T, target string) *forwarder {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &forwarder{lis: lis, target: target}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			f.mu.Lock()
			if err != nil || f.cut {
				f.mu.Unlock()
				c.Close()
				if s != nil {
					s.Close()
				}
				continue
			}
			f.conns = append(f.conns, c, s)
			f.mu.Unlock()
			f.wg.Add(2)
			go func() { defer f.wg.Done(); _, _ = io.Copy(s, c); s.Close() }()
			go func() { defer f.wg.Done(); _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		f.Cut()
		f.lis.Close()
		f.wg.Wait()
	})
	return f
}

func (f *forwarder) addr() string { return "http://" + f.lis.Addr().String() }

// Cut closes every relayed connection and refuses the next ones.
func (f *forwarder) Cut() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = true
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}
