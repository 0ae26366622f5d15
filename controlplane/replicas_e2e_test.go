package controlplane

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/test/envoymodel"
)

func replicaPolicyYAML(timeout string) string {
	return `apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: ` + timeout + `, connect: 2s}
`
}

// fleetProxies is what a test puts on the replicas: a gRPC-Go xDS client
// and an Envoy model first connected to each replica.
type fleetProxies struct {
	grpc   []*grpcProxy
	envoys []*envoymodel.Envoy
	ids    []string
}

type grpcProxy struct {
	id     string
	client interface {
		call() error
	}
}

type grpcCaller struct{ f func() error }

func (c grpcCaller) call() error { return c.f() }

func (f *fleetEnv) connectProxies() *fleetProxies {
	f.t.Helper()
	fp := &fleetProxies{}
	for i := range f.replicas {
		id := fmt.Sprintf("grpc-%d", i)
		c := f.grpcClient(i, id, "checkout", "payments")
		fp.grpc = append(fp.grpc, &grpcProxy{id: id, client: grpcCaller{func() error { _, err := call(c, 2*time.Second, "x"); return err }}})
		eid := fmt.Sprintf("envoy-%d", i)
		fp.envoys = append(fp.envoys, f.envoy(i, eid, "checkout", envoymodel.Options{InitialFetchTimeout: envoyFetchTimeout}))
		fp.ids = append(fp.ids, id, eid)
	}
	for _, p := range fp.grpc {
		eventually(f.t, 30*time.Second, p.client.call)
	}
	return fp
}

// agreed checks that every live replica lists exactly the proxies ids, each
// once, converged at revision rev, and reports that rollout at revision
// rev, with a whole (not partial) view. It returns which replica each
// proxy is connected to.
func (f *fleetEnv) agreed(ids []string, rev int64) (map[string]string, error) {
	where := map[string]string{}
	for i := range f.replicas {
		if f.stopped[i] {
			continue
		}
		l, err := f.proxies(i)
		if err != nil {
			return nil, err
		}
		if err := noneTwice(l.Items); err != nil {
			return nil, fmt.Errorf("replica %d: %w", i, err)
		}
		if l.Partial {
			return nil, fmt.Errorf("replica %d: partial view: %s", i, l.PartialReason)
		}
		if len(l.Items) != len(ids) {
			return nil, fmt.Errorf("replica %d lists %d proxies, want %d", i, len(l.Items), len(ids))
		}
		for _, p := range l.Items {
			if !p.Converged || p.Revision != rev {
				return nil, fmt.Errorf("replica %d: %s (on %s) converged %t at revision %d, want %d", i, p.ID, p.Replica, p.Converged, p.Revision, rev)
			}
			if w, ok := where[p.ID]; ok && w != p.Replica {
				return nil, fmt.Errorf("replica %d places %s on %s, another on %s", i, p.ID, p.Replica, w)
			}
			where[p.ID] = p.Replica
		}
		s, err := f.status(i)
		if err != nil {
			return nil, err
		}
		if s.Revision != rev || s.Rollout != (api.Rollout{Total: len(ids), Converged: len(ids)}) || s.Partial {
			return nil, fmt.Errorf("replica %d: status at revision %d (want %d), rollout %+v, partial %t", i, s.Revision, rev, s.Rollout, s.Partial)
		}
	}
	return where, nil
}

// noneTwice fails when a node id is listed more than once.
func noneTwice(ps []api.ProxyStatus) error {
	seen := map[string]string{}
	for _, p := range ps {
		if r, ok := seen[p.ID]; ok {
			return fmt.Errorf("%s listed twice (on %s and %s)", p.ID, r, p.Replica)
		}
		seen[p.ID] = p.Replica
	}
	return nil
}

// A write on one replica reaches the clients of every replica, and every
// replica then tells the same story: each proxy once, where it is
// connected, converged at the revision of the content (the same number on
// every replica, defect 6 of issue 10), within about a second (defect 1).
func TestReplicasWriteConvergeAndAgree(t *testing.T) {
	f := newFleetEnv(t, 3)
	b := startBackend(t, "payments-1", nil)
	f.mustPut(0, "/v1/services/checkout", serviceYAML("checkout", b.port))
	f.mustPut(0, "/v1/services/payments", serviceYAML("payments", b.port))
	fp := f.connectProxies()

	for round, timeout := range []string{"3s", "4s"} {
		rev := f.mustPut(round+1, "/v1/policies/payments", replicaPolicyYAML(timeout))
		wrote := time.Now()
		var where map[string]string
		eventually(t, 20*time.Second, func() error {
			var err error
			where, err = f.agreed(fp.ids, rev)
			return err
		})
		t.Logf("round %d: every replica agreed on %d proxies converged at revision %d %s after the write", round, len(fp.ids), rev, time.Since(wrote).Round(time.Millisecond))
		for i := range f.replicas {
			require.Equal(t, fmt.Sprintf("r%d", i), where[fmt.Sprintf("grpc-%d", i)], "the proxies are spread across the replicas")
		}
		for _, e := range fp.envoys {
			waitEnvoy(t, e, "the policy", settled(e, func(cfg envoymodel.Config) error {
				if _, ok := cfg.Routes["payments"]; !ok && len(cfg.Routes) == 0 {
					return fmt.Errorf("no routes yet")
				}
				return nil
			}))
		}
	}
}

// A replica that dies: its clients move to the others, which count each
// proxy once while the dead replica's status lingers in etcd until its
// lease expires (defect 2 of issue 10), and the clients keep calling.
func TestReplicaKilledClientsFailOver(t *testing.T) {
	f := newFleetEnv(t, 3)
	b := startBackend(t, "payments-1", nil)
	f.mustPut(0, "/v1/services/checkout", serviceYAML("checkout", b.port))
	rev := f.mustPut(0, "/v1/services/payments", serviceYAML("payments", b.port))
	fp := f.connectProxies()
	eventually(t, 20*time.Second, func() error { _, err := f.agreed(fp.ids, rev); return err })

	var failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range fp.grpc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if p.client.call() != nil {
					failed.Add(1)
				}
			}
		}()
	}
	f.kill(0)
	killed := time.Now()
	var doubled error
	eventually(t, 20*time.Second, func() error {
		for i := 1; i < len(f.replicas); i++ {
			l, err := f.proxies(i)
			if err != nil {
				return err
			}
			if err := noneTwice(l.Items); err != nil && doubled == nil {
				doubled = fmt.Errorf("replica %d: %w", i, err)
			}
			for _, p := range l.Items {
				if p.Replica == "r0" {
					return fmt.Errorf("replica %d: %s still on the dead replica", i, p.ID)
				}
			}
		}
		_, err := f.agreed(fp.ids, rev)
		return err
	})
	t.Logf("every client of the dead replica reconnected and was reported elsewhere %s after the kill", time.Since(killed).Round(time.Millisecond))
	require.NoError(t, doubled, "a proxy was counted twice during the failover")
	close(stop)
	wg.Wait()
	require.Zero(t, failed.Load(), "calls failed while the replica died: clients keep their config")

	// The dead replica's status is still in etcd: the view leaves it out by node id.
	all, err := f.replicas[1].Store().ListStatus(t.Context())
	require.NoError(t, err)
	require.NotEmpty(t, all["r0"], "the dead replica's status lingers until its lease expires")
}

// With quorum lost (two of three members stopped), the proxies keep their
// config, readiness fails with the reason, the fleet view says it is
// partial (defect 3 of issue 10), writes answer 503; once the members are
// back, nothing acknowledged is lost and writes go through again.
func TestReplicasQuorumLost(t *testing.T) {
	f := newFleetEnv(t, 2)
	b := startBackend(t, "payments-1", nil)
	f.mustPut(0, "/v1/services/checkout", serviceYAML("checkout", b.port))
	f.mustPut(0, "/v1/services/payments", serviceYAML("payments", b.port))
	rev := f.mustPut(1, "/v1/policies/payments", replicaPolicyYAML("3s"))
	fp := f.connectProxies()
	eventually(t, 20*time.Second, func() error { _, err := f.agreed(fp.ids, rev); return err })

	f.etcd.stop(1)
	f.etcd.stop(2)
	lost := time.Now()
	for i := range f.replicas {
		eventually(t, 20*time.Second, func() error {
			code, body := f.get(i, "/health/ready")
			if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "store unreachable") {
				return fmt.Errorf("replica %d ready: %d %s", i, code, body)
			}
			return nil
		})
		l, err := f.proxies(i)
		require.NoError(t, err)
		require.True(t, l.Partial, "replica %d: the view must say it is partial", i)
		require.Contains(t, l.PartialReason, "unreachable")
		s, err := f.status(i)
		require.NoError(t, err)
		require.True(t, s.Partial)
		require.False(t, s.StoreUp)
	}
	t.Logf("readiness failed on every replica %s after quorum was lost", time.Since(lost).Round(time.Millisecond))
	code, body := f.put(0, "/v1/policies/payments", replicaPolicyYAML("5s"))
	require.Equal(t, http.StatusServiceUnavailable, code, "%s", body)
	require.Contains(t, string(body), "store-unavailable")
	for _, p := range fp.grpc {
		require.NoError(t, p.client.call(), "clients keep their config")
	}

	f.etcd.restart(1)
	f.etcd.restart(2)
	for i := range f.replicas {
		eventually(t, 30*time.Second, func() error {
			if code, body := f.get(i, "/health/ready"); code != http.StatusOK {
				return fmt.Errorf("replica %d: %d %s", i, code, body)
			}
			return nil
		})
	}
	code, body = f.get(1, "/v1/policies/payments")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), `"revision": `)
	rev = f.mustPut(0, "/v1/policies/payments", replicaPolicyYAML("4s"))
	eventually(t, 20*time.Second, func() error { _, err := f.agreed(fp.ids, rev); return err })
}

// Defect 5 of issue 10: a proxy that rejected a version is never sent it
// again, on the replica where it rejected it (after reconnecting there) or
// on the replica it moves to when that one dies, and every replica reports
// it rejecting, with the reason, not converged.
func TestRejectedVersionIsNotResentAnywhere(t *testing.T) {
	f := newFleetEnv(t, 3)
	b := startBackend(t, "payments-1", nil)
	f.mustPut(0, "/v1/services/checkout", serviceYAML("checkout", b.port))
	f.mustPut(0, "/v1/services/payments", serviceYAML("payments", b.port))
	// The model rejects a payments cluster with a 7s connect timeout.
	reject := func(typeURL, name string, m proto.Message) error {
		if c, ok := m.(*clusterv3.Cluster); ok && strings.Contains(name, "payments") && c.GetConnectTimeout().AsDuration() == 7*time.Second {
			return fmt.Errorf("cluster %s: connect timeout refused by this proxy", name)
		}
		return nil
	}
	e := f.envoy(0, "picky", "checkout", envoymodel.Options{InitialFetchTimeout: envoyFetchTimeout, Reject: reject})
	waitEnvoy(t, e, "first config", settled(e, func(cfg envoymodel.Config) error {
		if len(cfg.Clusters) == 0 {
			return fmt.Errorf("no clusters")
		}
		return nil
	}))
	bad := `apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {connect: 7s}
`
	f.mustPut(1, "/v1/policies/payments", bad)
	waitEnvoy(t, e, "the NACK", func() error {
		if e.Stats().ByType[resourcev3.ClusterType].NACKs == 0 {
			return fmt.Errorf("no NACK yet")
		}
		return nil
	})
	rejecting := func(on string) func() error {
		return func() error {
			for i := range f.replicas {
				if f.stopped[i] {
					continue
				}
				l, err := f.proxies(i)
				if err != nil {
					return err
				}
				if len(l.Items) != 1 || l.Items[0].Replica != on || !l.Items[0].Rejecting() || l.Items[0].Converged {
					return fmt.Errorf("replica %d: %+v, want picky rejecting on %s", i, l.Items, on)
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
	nacks := func() int { return e.Stats().ByType[resourcev3.ClusterType].NACKs }
	require.Equal(t, 1, nacks())

	// A new stream to the same replica: held back, and still rejecting.
	require.NoError(t, e.Reconnect())
	eventually(t, 20*time.Second, rejecting("r0"))

	// Its replica dies: the next one must not send the version either.
	f.kill(0)
	eventually(t, 20*time.Second, rejecting("r1"))
	require.Equal(t, 1, nacks(), "the rejected version was sent again")

	// The next version goes out normally.
	rev := f.mustPut(2, "/v1/policies/payments", replicaPolicyYAML("3s"))
	eventually(t, 20*time.Second, func() error { _, err := f.agreed([]string{"picky"}, rev); return err })
	require.Equal(t, 1, nacks())
}
