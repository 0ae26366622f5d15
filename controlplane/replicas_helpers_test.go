package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/resolver"
	xdsgrpc "google.golang.org/grpc/xds"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/test/envoymodel"
)

// The multi-replica tests: a three-member etcd cluster in this process and
// several replicas over it, with gRPC-Go's xDS client and the Envoy model
// spread across them.

// relay is a TCP forwarder in front of an etcd member's port. Cutting it
// closes every connection and refuses new ones, as a member that was
// killed or cut off by the network; its peers and clients dial the relay.
type relay struct {
	lis    net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]bool
	cut    bool
	wg     sync.WaitGroup
}

func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &relay{lis: lis, target: target, conns: map[net.Conn]bool{}}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(func() {
		r.setCut(true)
		lis.Close()
		r.wg.Wait()
	})
	return r
}

func (r *relay) addr() string { return r.lis.Addr().String() }

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.lis.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		cut, target := r.cut, r.target
		r.mu.Unlock()
		if cut {
			c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", target, time.Second)
		if err != nil {
			c.Close()
			continue
		}
		r.mu.Lock()
		r.conns[c], r.conns[s] = true, true
		r.mu.Unlock()
		r.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer r.wg.Done()
			_, _ = io.Copy(dst, src)
			dst.Close()
			src.Close()
			r.mu.Lock()
			delete(r.conns, dst)
			delete(r.conns, src)
			r.mu.Unlock()
		}
		go pipe(s, c)
		go pipe(c, s)
	}
}

// retarget points the relay at a member's new port.
func (r *relay) retarget(target string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.target = target
}

func (r *relay) setCut(cut bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = cut
	if cut {
		for c := range r.conns {
			c.Close()
		}
	}
}

// member is one etcd member; its client and peer ports are reached
// through relays.
type member struct {
	cfg          *embed.Config
	etcd         *embed.Etcd
	client, peer *relay
}

// etcdCluster is three etcd members in this process: loopback, ports
// picked free, data in t.TempDir(), no fsync, no logs.
type etcdCluster struct {
	t       *testing.T
	members []*member
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().String()
}

func newEtcdCluster(t *testing.T, n int) *etcdCluster {
	t.Helper()
	c := &etcdCluster{t: t}
	var initial []string
	for i := range n {
		clientAddr, peerAddr := freePort(t), freePort(t)
		m := &member{client: newRelay(t, clientAddr), peer: newRelay(t, peerAddr)}
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = t.TempDir()
		cfg.ListenClientUrls = []url.URL{{Scheme: "http", Host: clientAddr}}
		cfg.AdvertiseClientUrls = []url.URL{{Scheme: "http", Host: m.client.addr()}}
		cfg.ListenPeerUrls = []url.URL{{Scheme: "http", Host: peerAddr}}
		cfg.AdvertisePeerUrls = []url.URL{{Scheme: "http", Host: m.peer.addr()}}
		cfg.InitialClusterToken = "bulwark-test"
		cfg.Logger = "zap"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.UnsafeNoFsync = true
		cfg.TickMs, cfg.ElectionMs = 50, 500
		cfg.ListenMetricsUrls = nil
		m.cfg = cfg
		initial = append(initial, fmt.Sprintf("%s=http://%s", cfg.Name, m.peer.addr()))
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, m := range c.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.startNew(m)
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, m := range c.members {
			if m.etcd != nil {
				m.etcd.Close()
			}
		}
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	return c
}

// startNew starts a new member. etcd panics when it cannot create its WAL,
// which happened once on a loaded machine; the member then gets one more
// try on a new data directory and new ports behind the same relays (the
// failed attempt may hold its listeners).
func (c *etcdCluster) startNew(m *member) error {
	err := c.tryStart(m)
	if !errors.Is(err, errPanicked) {
		return err
	}
	c.t.Logf("etcd member %s: %v; starting it again on a new data directory", m.cfg.Name, err)
	m.cfg.Dir = c.t.TempDir()
	clientAddr, peerAddr := freePort(c.t), freePort(c.t)
	m.cfg.ListenClientUrls = []url.URL{{Scheme: "http", Host: clientAddr}}
	m.cfg.ListenPeerUrls = []url.URL{{Scheme: "http", Host: peerAddr}}
	m.client.retarget(clientAddr)
	m.peer.retarget(peerAddr)
	return c.start(m)
}

var errPanicked = errors.New("panicked")

func (c *etcdCluster) tryStart(m *member) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errPanicked, r)
		}
	}()
	return c.start(m)
}

func (c *etcdCluster) start(m *member) error {
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return err
	}
	select {
	case <-e.Server.ReadyNotify():
		m.etcd = e
		return nil
	case <-time.After(30 * time.Second):
		e.Close()
		return fmt.Errorf("etcd member %s not ready", m.cfg.Name)
	}
}

// endpoints are the members' client URLs (their relays).
func (c *etcdCluster) endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, "http://"+m.client.addr())
	}
	return out
}

// stop kills member i: its connections drop at once, then it stops.
func (c *etcdCluster) stop(i int) {
	m := c.members[i]
	m.client.setCut(true)
	m.peer.setCut(true)
	m.etcd.Close()
	m.etcd = nil
}

// restart starts member i again on its data. It listens on new ports behind
// the same relays: the ports it had may have been taken meanwhile (by an
// outgoing connection's ephemeral port, for one).
func (c *etcdCluster) restart(i int) {
	m := c.members[i]
	clientAddr, peerAddr := freePort(c.t), freePort(c.t)
	m.cfg.ListenClientUrls = []url.URL{{Scheme: "http", Host: clientAddr}}
	m.cfg.ListenPeerUrls = []url.URL{{Scheme: "http", Host: peerAddr}}
	m.client.retarget(clientAddr)
	m.peer.retarget(peerAddr)
	m.client.setCut(false)
	m.peer.setCut(false)
	require.NoError(c.t, c.start(m))
}

// The "replicas" resolver scheme stands for a DNS name that resolves to
// every replica (a Kubernetes Service): replicas:///a,b,c lists the
// addresses, in the order pick_first tries them.
func init() { resolver.Register(replicasResolver{}) }

type replicasResolver struct{}

func (replicasResolver) Scheme() string { return "replicas" }

func (replicasResolver) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	var addrs []resolver.Address
	for _, a := range strings.Split(strings.TrimPrefix(target.URL.Path, "/"), ",") {
		addrs = append(addrs, resolver.Address{Addr: a})
	}
	return replicasResolver{}, cc.UpdateState(resolver.State{Addresses: addrs})
}

func (replicasResolver) ResolveNow(resolver.ResolveNowOptions) {}
func (replicasResolver) Close()                                {}

// fleetEnv is an etcd cluster and replicas over it.
type fleetEnv struct {
	t        *testing.T
	etcd     *etcdCluster
	replicas []*ControlPlane
	stopped  []bool
}

func newFleetEnv(t *testing.T, replicas int, tune ...func(*Config)) *fleetEnv {
	t.Helper()
	f := &fleetEnv{t: t, etcd: newEtcdCluster(t, 3)}
	for i := range replicas {
		cfg := Config{
			XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", EtcdEndpoints: f.etcd.endpoints(),
			Replica: fmt.Sprintf("r%d", i), Debounce: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
			StoreGrace: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		for _, fn := range tune {
			fn(&cfg)
		}
		cp, err := New(cfg)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		require.NoError(t, cp.Start(ctx))
		f.replicas = append(f.replicas, cp)
		f.stopped = append(f.stopped, false)
		t.Cleanup(func() {
			cancel()
			if !f.stopped[i] {
				cp.Stop()
			}
		})
	}
	for i := range f.replicas {
		eventually(t, 20*time.Second, func() error {
			if code, body := f.get(i, "/health/ready"); code != http.StatusOK {
				return fmt.Errorf("replica %d not ready: %d %s", i, code, body)
			}
			return nil
		})
	}
	return f
}

// kill stops replica i as a crash would: its status stays in etcd until
// its lease expires (the client closes before the lease can be revoked).
func (f *fleetEnv) kill(i int) {
	f.t.Helper()
	cp := f.replicas[i]
	require.NoError(f.t, cp.client.Close())
	cp.Stop()
	f.stopped[i] = true
}

func (f *fleetEnv) url(i int, path string) string {
	return "http://" + f.replicas[i].AdminAddr() + path
}

func (f *fleetEnv) get(i int, path string) (int, []byte) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(f.url(i, path))
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (f *fleetEnv) put(i int, path, yaml string) (int, []byte) {
	req, err := http.NewRequest(http.MethodPut, f.url(i, path), strings.NewReader(yaml))
	require.NoError(f.t, err)
	req.Header.Set("Content-Type", "application/yaml")
	c := http.Client{Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// mustPut writes a resource through replica i and returns its revision.
func (f *fleetEnv) mustPut(i int, path, yaml string) int64 {
	f.t.Helper()
	code, body := f.put(i, path, yaml)
	require.Contains(f.t, []int{http.StatusOK, http.StatusCreated}, code, "%s", body)
	var w struct {
		Revision int64 `json:"revision"`
	}
	require.NoError(f.t, json.Unmarshal(body, &w), "%s", body)
	require.NotZero(f.t, w.Revision, "%s", body)
	return w.Revision
}

func (f *fleetEnv) proxies(i int) (api.ProxyList, error) {
	code, body := f.get(i, "/v1/proxies")
	var l api.ProxyList
	if code != http.StatusOK {
		return l, fmt.Errorf("replica %d: /v1/proxies %d: %s", i, code, body)
	}
	return l, json.Unmarshal(body, &l)
}

func (f *fleetEnv) status(i int) (api.StatusReport, error) {
	code, body := f.get(i, "/v1/status")
	var r api.StatusReport
	if code != http.StatusOK {
		return r, fmt.Errorf("replica %d: /v1/status %d: %s", i, code, body)
	}
	return r, json.Unmarshal(body, &r)
}

// xdsTarget names every live replica's xDS address, replica first first.
func (f *fleetEnv) xdsTarget(first int) string {
	var addrs []string
	for k := range f.replicas {
		i := (first + k) % len(f.replicas)
		if !f.stopped[i] {
			addrs = append(addrs, f.replicas[i].XDSAddr())
		}
	}
	return "replicas:///" + strings.Join(addrs, ",")
}

// grpcClient dials gRPC-Go's xDS client as node of service source, its xDS
// server the replicas (replica first first), to xds:///target.
func (f *fleetEnv) grpcClient(first int, node, source, target string) testgrpc.TestServiceClient {
	f.t.Helper()
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": %q, "cluster": %q, "locality": {"zone": "z1"}}
	}`, f.xdsTarget(first), node, source)
	res, err := xdsgrpc.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	require.NoError(f.t, err)
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(res))
	require.NoError(f.t, err)
	f.t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

// envoy starts the Envoy model as node of service, its ADS cluster the
// replicas (replica first first); like Envoy, it opens a new stream when
// one fails, on a connection that moves to the next replica.
func (f *fleetEnv) envoy(first int, node, service string, opts envoymodel.Options) *envoymodel.Envoy {
	f.t.Helper()
	conn, err := grpc.NewClient(f.xdsTarget(first), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(f.t, err)
	opts.NodeID, opts.NodeCluster, opts.Conn = node, service, conn
	e := envoymodel.New("", opts)
	require.NoError(f.t, e.Start())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if e.Wait(ctx, func() bool { return e.Err() != nil }) != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond): // Envoy's retry backoff starts near here
			}
			_ = e.Reconnect()
		}
	}()
	f.t.Cleanup(func() {
		cancel()
		<-done
		e.Close()
		conn.Close()
	})
	return e
}
