package controlplane

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/bulwarkmesh/bulwark/test/envoymodel"
)

// movableConn dials whichever replica it is pointed at; moveTo closes the
// connections it made, so the next stream goes to the new replica, as a
// load balancer that moved a proxy.
type movableConn struct {
	mu     sync.Mutex
	target string
	conns  []net.Conn
}

func (m *movableConn) dial(ctx context.Context, _ string) (net.Conn, error) {
	m.mu.Lock()
	target := m.target
	m.mu.Unlock()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", target)
	if err == nil {
		m.mu.Lock()
		m.conns = append(m.conns, c)
		m.mu.Unlock()
	}
	return c, err
}

func (m *movableConn) moveTo(target string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.target = target
	for _, c := range m.conns {
		c.Close()
	}
	m.conns = nil
}

// badPaymentsOnWire counts the delta CDS responses received that carry the
// payments cluster with the 7s connect timeout the model rejects.
type badPaymentsOnWire struct {
	grpc.ClientStream
	n *atomic.Int64
}

func (s badPaymentsOnWire) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if resp, ok := m.(*discoveryv3.DeltaDiscoveryResponse); ok && err == nil && resp.GetTypeUrl() == resourcev3.ClusterType {
		for _, r := range resp.GetResources() {
			var c clusterv3.Cluster
			if strings.Contains(r.GetName(), "payments") && r.GetResource().UnmarshalTo(&c) == nil && c.GetConnectTimeout().AsDuration() == 7*time.Second {
				s.n.Add(1)
				break
			}
		}
	}
	return err
}

// Defect 5 of issue 10, delta streams: an Envoy on a delta ADS stream that
// rejected a cluster and reconnects, to the same replica or to another, is
// not sent that cluster again (counted on the wire), gets the clusters that
// change meanwhile, and is reported rejecting on every replica.
func TestDeltaRejectedResourceIsNotResentAnywhere(t *testing.T) {
	f := newFleetEnv(t, 2)
	b := startBackend(t, "payments-1", nil)
	f.mustPut(0, "/v1/services/checkout", serviceYAML("checkout", b.port))
	f.mustPut(0, "/v1/services/payments", serviceYAML("payments", b.port))

	mc := &movableConn{target: f.replicas[0].XDSAddr()}
	var bad atomic.Int64
	conn, err := grpc.NewClient("passthrough:///replicas",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(mc.dial),
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			s, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, err
			}
			return badPaymentsOnWire{ClientStream: s, n: &bad}, nil
		}))
	require.NoError(t, err)
	reject := func(typeURL, name string, m proto.Message) error {
		if c, ok := m.(*clusterv3.Cluster); ok && strings.Contains(name, "payments") && c.GetConnectTimeout().AsDuration() == 7*time.Second {
			return fmt.Errorf("cluster %s: connect timeout refused by this proxy", name)
		}
		return nil
	}
	e := envoymodel.New("", envoymodel.Options{
		Mode: envoymodel.Delta, NodeID: "picky-delta", NodeCluster: "checkout", Conn: conn,
		InitialFetchTimeout: envoyFetchTimeout, Reject: reject,
	})
	require.NoError(t, e.Start())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // like Envoy, a new stream when one fails
		defer close(done)
		for e.Wait(ctx, func() bool { return e.Err() != nil }) == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			_ = e.Reconnect()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		e.Close()
		conn.Close()
	})
	waitEnvoy(t, e, "first config", settled(e, func(cfg envoymodel.Config) error {
		for name := range cfg.Clusters {
			if strings.Contains(name, "payments") {
				return nil
			}
		}
		return fmt.Errorf("no payments cluster: %v", cfg.Clusters)
	}))

	f.mustPut(1, "/v1/policies/payments", `apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {connect: 7s}
`)
	nacks := func() int { return e.Stats().ByType[resourcev3.ClusterType].NACKs }
	waitEnvoy(t, e, "the NACK", func() error {
		if nacks() == 0 {
			return fmt.Errorf("no NACK yet")
		}
		return nil
	})
	require.EqualValues(t, 1, bad.Load())
	rejecting := func(on string) func() error {
		return func() error {
			for i := range f.replicas {
				l, err := f.proxies(i)
				if err != nil {
					return err
				}
				if len(l.Items) != 1 || l.Items[0].Replica != on || !l.Items[0].Rejecting() || l.Items[0].Converged {
					return fmt.Errorf("replica %d: %+v, want picky-delta rejecting on %s", i, l.Items, on)
				}
				if n := l.Items[0].Types["clusters"].LastNack; n == nil || !strings.Contains(n.Error, "connect timeout refused") {
					return fmt.Errorf("replica %d: no reason for the rejection: %+v", i, l.Items[0].Types["clusters"])
				}
				if s, err := f.status(i); err != nil || s.Rollout.Rejecting != 1 {
					return fmt.Errorf("replica %d: rollout %+v (%v)", i, s.Rollout, err)
				}
			}
			return nil
		}
	}
	eventually(t, 20*time.Second, rejecting("r0"))

	// answered waits for the current stream's CDS answer, after n responses.
	answered := func(what string, n int) {
		waitEnvoy(t, e, what, func() error {
			if e.Err() != nil {
				return e.Err()
			}
			if s := e.Stats().ByType[resourcev3.ClusterType]; s.Responses <= n || s.ACKs+s.NACKs < s.Responses {
				return fmt.Errorf("no CDS answer on the new stream yet: %+v", s)
			}
			return nil
		})
	}
	cds := func() int { return e.Stats().ByType[resourcev3.ClusterType].Responses }

	// A new stream to the same replica.
	n := cds()
	require.NoError(t, e.Reconnect())
	answered("reconnect to r0", n)
	eventually(t, 20*time.Second, rejecting("r0"))
	require.EqualValues(t, 1, bad.Load(), "the rejected cluster was sent again on r0")
	require.Equal(t, 1, nacks())

	// Moved to the other replica, once it has the record.
	eventually(t, 20*time.Second, func() error {
		if _, ok := f.replicas[1].tracker.Rejection("picky-delta", resourcev3.ClusterType); !ok {
			return fmt.Errorf("replica r1 has not adopted the rejection")
		}
		return nil
	})
	n = cds()
	mc.moveTo(f.replicas[1].XDSAddr())
	answered("reconnect to r1", n)
	eventually(t, 20*time.Second, rejecting("r1"))
	require.EqualValues(t, 1, bad.Load(), "the rejected cluster was sent again on r1")
	require.Equal(t, 1, nacks())

	// Its other clusters still arrive, without the rejected one.
	f.mustPut(0, "/v1/services/inventory", serviceYAML("inventory", b.port))
	waitEnvoy(t, e, "the inventory cluster", settled(e, func(cfg envoymodel.Config) error {
		for name := range cfg.Clusters {
			if strings.Contains(name, "inventory") {
				return nil
			}
		}
		return fmt.Errorf("no inventory cluster: %v", cfg.Clusters)
	}))
	eventually(t, 20*time.Second, rejecting("r1"))
	require.EqualValues(t, 1, bad.Load(), "the rejected cluster was sent again with the next change")
	require.Equal(t, 1, nacks())

	// Back to the first replica: still held.
	n = cds()
	mc.moveTo(f.replicas[0].XDSAddr())
	answered("back on r0", n)
	eventually(t, 20*time.Second, rejecting("r0"))
	require.EqualValues(t, 1, bad.Load(), "the rejected cluster was sent again back on r0")

	// A fixed cluster goes out normally, and the proxy converges.
	rev := f.mustPut(1, "/v1/policies/payments", replicaPolicyYAML("3s"))
	eventually(t, 20*time.Second, func() error { _, err := f.agreed([]string{"picky-delta"}, rev); return err })
	require.EqualValues(t, 1, bad.Load())
	require.Equal(t, 1, nacks())
}
