package adminapi_test

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/bulwarkmesh/bulwark/controlplane/adminapi"
	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

// cuttingProxy forwards TCP to etcd and, once armed, resets the connection
// that carries the first response after arming (the first HTTP/2 HEADERS
// or DATA frame of a stream from the server): the request reached etcd,
// its answer never reaches the client.
type cuttingProxy struct {
	lis    net.Listener
	target string
	armed  atomic.Bool
	cuts   atomic.Int32
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newCuttingProxy(t *testing.T, target string) *cuttingProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cuttingProxy{lis: lis, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *cuttingProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(s, c)
			s.Close()
		}()
		go func() {
			defer p.wg.Done()
			p.serverToClient(s, c)
			c.Close()
			s.Close()
		}()
	}
}

// serverToClient copies HTTP/2 frames (a server sends no preface, only
// frames: a 9-byte header, then the payload) and cuts when armed.
func (p *cuttingProxy) serverToClient(s, c net.Conn) {
	head := make([]byte, 9)
	for {
		if _, err := io.ReadFull(s, head); err != nil {
			return
		}
		n := int(head[0])<<16 | int(head[1])<<8 | int(head[2])
		typ, stream := head[3], binary.BigEndian.Uint32(head[5:9])&0x7fffffff
		payload := make([]byte, n)
		if _, err := io.ReadFull(s, payload); err != nil {
			return
		}
		if stream != 0 && (typ == 0 || typ == 1) && p.armed.CompareAndSwap(true, false) {
			p.cuts.Add(1)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // a reset, not a clean close
			}
			return
		}
		if _, err := c.Write(append(head, payload...)); err != nil {
			return
		}
	}
}

func (p *cuttingProxy) close() {
	p.lis.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// Defect 7 of issue 10: a write whose connection to etcd is reset while it
// is being committed answers 503 saying the outcome is unknown (here it was
// in fact committed), not that nothing was written.
func TestAPIWriteCutMidCommitIsOutcomeUnknown(t *testing.T) {
	srv := storetest.NewServer(t)
	direct := store.New(storetest.NewClient(t, srv), store.Options{MaxTxnOps: srv.MaxTxnOps()})
	t.Cleanup(func() { require.NoError(t, direct.Close()) })
	proxy := newCuttingProxy(t, srv.Config().ListenClient)
	arm := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == "/etcdserverpb.KV/Txn" {
			proxy.armed.Store(true)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{"http://" + proxy.lis.Addr().String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(arm)},
	})
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := store.New(cli, store.Options{Logger: log, MaxTxnOps: srv.MaxTxnOps()})
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	s := adminapi.New(adminapi.Deps{
		Store: st, Applier: apply.New(st, policies.ValidateOptions{}),
		Fleet: &fakeFleet{}, Builds: &fakeBuilds{}, Health: &fakeHealth{ready: api.Readiness{Ready: true}, storeUp: true},
		Metrics: http.NotFoundHandler(), Replica: "test", Logger: log,
	})
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	e := &env{url: hs.URL, client: hs.Client(), st: st}

	p := problem(t, e.do(t, http.MethodPut, "/v1/services/payments", "", "application/yaml", serviceYAML("9001")), http.StatusServiceUnavailable, api.ProblemStoreUnavailable)
	require.Equal(t, int32(1), proxy.cuts.Load(), "the commit's answer was cut")
	require.Contains(t, p.Detail, "outcome of the write is unknown")
	require.NotContains(t, p.Detail, "nothing was written")
	_, err = direct.Get(t.Context(), policies.KindService, "payments")
	require.NoError(t, err, "the write was committed: saying nothing was written would have been wrong")

}
