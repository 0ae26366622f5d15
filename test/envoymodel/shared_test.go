package envoymodel

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Instances that receive the same bytes share one decoded message; the Reject
// predicate is still asked per instance, so a resource one instance rejects is
// accepted by another, also when the decoding comes from the cache.
func TestInstancesShareDecodedResourcesButRejectAlone(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			x := startServer(t)
			x.setContent(t, baseResources(time.Second))
			conn, err := grpc.NewClient(x.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = conn.Close() })
			// start returns an instance and how often its predicate rejected "bad"
			// (written on its stream goroutine with it locked).
			start := func(reject bool) (*Envoy, *int) {
				rejected := new(int)
				opts := Options{Mode: m.mode, NodeID: testNode, NodeCluster: "checkout", Conn: conn, InitialFetchTimeout: -1}
				if reject {
					opts.Reject = func(typeURL, name string, _ proto.Message) error {
						if typeURL == typeCluster && name == "bad" {
							*rejected++
							return errors.New("cluster bad is not allowed here")
						}
						return nil
					}
				}
				e := New(x.addr, opts)
				if err := e.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = e.Close() })
				return e, rejected
			}
			picky, pickyRejected := start(true)
			lax, _ := start(false)
			warmWith(t, picky)
			warmWith(t, lax)

			a, b := picky.Config(), lax.Config()
			for what, pair := range map[string][2]proto.Message{
				"cluster":  {a.Clusters["payments"].Message, b.Clusters["payments"].Message},
				"endpoint": {a.Endpoints["payments"].Message, b.Endpoints["payments"].Message},
				"listener": {a.Listeners["outbound"].Message, b.Listeners["outbound"].Message},
				"route":    {a.Routes["outbound"].Message, b.Routes["outbound"].Message},
			} {
				if pair[0] == nil || pair[0] != pair[1] {
					t.Errorf("%s: instances hold different messages %p and %p", what, pair[0], pair[1])
				}
			}

			// One response carrying a cluster that only the picky instance rejects.
			res := baseResources(2 * time.Second)
			res[typeCluster] = append(res[typeCluster], edsCluster("bad", time.Second))
			// A new assignment too, so that delta sends it and the changed cluster warms
			// (see TestClusterChangeStallsOnContentVersionedEDS).
			res[typeEndpoint] = []types.Resource{withPolicy(assignment("payments", 8080)), assignment("bad", 9090)}
			x.setContent(t, res)
			waitFor(t, picky, "CDS NACK", func() bool { return picky.Stats().ByType[typeCluster].NACKs > 0 })
			waitFor(t, lax, "bad accepted", func() bool {
				_, ok := lax.Config().Clusters["bad"]
				return ok && connectTimeout(lax.Config(), "payments") == 2*time.Second && lax.AllWarm()
			})
			if n := lax.Stats().NACKs; n != 0 {
				t.Fatalf("lax instance NACKed %d times: %s", n, lax.Stats().LastNACK)
			}
			if c := picky.Config(); connectTimeout(c, "payments") != time.Second || c.Clusters["bad"].Message != nil {
				t.Fatalf("picky instance applied the rejected response: %v", c.Clusters)
			}

			// The lax instance holds "bad", so a third instance decodes nothing: its
			// predicate must still see, and reject, the cached cluster.
			late, lateRejected := start(true)
			waitFor(t, late, "CDS NACK from the cache", func() bool { return late.Stats().ByType[typeCluster].NACKs > 0 })
			if !strings.Contains(late.Stats().LastNACK, "cluster bad is not allowed") {
				t.Fatalf("LastNACK %q", late.Stats().LastNACK)
			}
			if c := late.Config(); len(c.Clusters) != 0 {
				t.Fatalf("late instance applied clusters from a rejected response: %v", c.Clusters)
			}
			picky.mu.Lock()
			np := *pickyRejected
			picky.mu.Unlock()
			late.mu.Lock()
			nl := *lateRejected
			late.mu.Unlock()
			if np == 0 || nl == 0 {
				t.Fatalf("Reject asked %d times for the picky instance, %d for the late one", np, nl)
			}
			x.setContent(t, baseResources(time.Second)) // stop the server's resend loop
		})
	}
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sharedHas(typeURL string, value []byte) bool {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	_, ok := shared.ok[typeURL][string(value)]
	return ok
}

// gcUntil collects garbage until cond holds (cleanups run after a collection,
// on a goroutine of their own), or gives up.
func gcUntil(cond func() bool) bool {
	for range 200 {
		if cond() {
			return true
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	return cond()
}

// The cache keeps a message while someone references it and forgets it after.
func TestSharedDecodeIsDroppedWhenUnreferenced(t *testing.T) {
	value := marshal(t, edsCluster("only-here", time.Second))
	d1, m1 := sharedDecode(typeCluster, value)
	d2, m2 := sharedDecode(typeCluster, append([]byte(nil), value...))
	if d1.stage != stageOK || m1 == nil || m1 != m2 || d1 != d2 {
		t.Fatalf("second decode not shared: %v %p %p", d1.err, m1, m2)
	}
	if d1.name != "only-here" {
		t.Fatalf("name %q", d1.name)
	}
	runtime.GC()
	if !sharedHas(typeCluster, value) {
		t.Fatal("entry dropped while its message is referenced")
	}
	runtime.KeepAlive(m1)
	runtime.KeepAlive(m2)
	m1, m2 = nil, nil
	if !gcUntil(func() bool { return !sharedHas(typeCluster, value) }) {
		t.Fatal("entry kept after its message became unreachable")
	}
	// The same bytes decode again, to a new message.
	if d, m := sharedDecode(typeCluster, value); d.stage != stageOK || m == nil {
		t.Fatalf("decode after drop: %v", d.err)
	}
}

// A long run with changing configuration does not grow the cache: only what is
// still referenced stays.
func TestSharedDecodeChurnIsBounded(t *testing.T) {
	before, _ := sharedEntries()
	var keep proto.Message
	for i := range 5000 {
		_, m := sharedDecode(typeCluster, marshal(t, edsCluster(fmt.Sprintf("churn-%d", i), time.Second)))
		keep = m
	}
	if !gcUntil(func() bool { n, _ := sharedEntries(); return n <= before+1 }) {
		n, _ := sharedEntries()
		t.Fatalf("%d entries after churn, %d before", n, before)
	}
	runtime.KeepAlive(keep)
	for i := range 2 * maxFailed {
		bad := &clusterv3.Cluster{Name: fmt.Sprintf("bad-%d", i), ConnectTimeout: durationpb.New(-time.Second)}
		if d, m := sharedDecode(typeCluster, marshal(t, bad)); d.stage != stageValidate || m != nil {
			t.Fatalf("invalid cluster: stage %d", d.stage)
		}
	}
	if _, failed := sharedEntries(); failed > maxFailed {
		t.Fatalf("%d failed entries kept, bound %d", failed, maxFailed)
	}
}
