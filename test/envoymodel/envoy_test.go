package envoymodel

import (
	"errors"
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

func TestInitialSnapshotIsACKedAndWarms(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			x := startServer(t)
			versions := x.setContent(t, baseResources(time.Second))
			e := newModel(t, x, Options{Mode: m.mode})
			warmWith(t, e)

			c := e.Config()
			ep, ok := c.Endpoints["payments"]
			if !ok || c.Clusters["payments"].WarmedByTimeout {
				t.Fatalf("payments: endpoints %v, cluster %+v", ok, c.Clusters["payments"])
			}
			if m.mode == SotW {
				for typ, v := range map[string]string{typeCluster: c.Clusters["payments"].Version,
					typeEndpoint: ep.Version, typeListener: c.Listeners["outbound"].Version,
					typeRoute: c.Routes["outbound"].Version} {
					if v != versions[typ] {
						t.Errorf("%s: model holds version %q, server sent %q", typ, v, versions[typ])
					}
				}
			}
			s := e.Stats()
			for _, typ := range []string{typeCluster, typeEndpoint, typeListener, typeRoute} {
				if s.ByType[typ].ACKs < 1 {
					t.Errorf("%s: no ACK sent (%+v)", typ, s.ByType[typ])
				}
			}
			if s.NACKs != 0 || s.ClustersWarmedByTimeout != 0 || s.ListenersWarmedByTimeout != 0 {
				t.Fatalf("stats %+v", s)
			}
			checkStartupOrder(t, x.requests())
		})
	}
}

// checkStartupOrder asserts Envoy's order of first requests (CDS, EDS, then LDS only
// after the clusters warmed, then RDS) and the node rules of each protocol.
func checkStartupOrder(t *testing.T, reqs []wireReq) {
	t.Helper()
	var order []string
	seen := map[string]bool{}
	for i, r := range reqs {
		typ, hasNode := "", false
		if r.sotw != nil {
			typ, hasNode = r.sotw.TypeUrl, r.sotw.Node != nil
			if hasNode != (i == 0) {
				t.Errorf("SotW request %d (%s): node present %v; Envoy sends it on the first request only", i, typ, hasNode)
			}
		} else {
			typ, hasNode = r.delta.TypeUrl, r.delta.Node != nil
			if !hasNode {
				t.Errorf("delta request %d (%s) without node", i, typ)
			}
		}
		if i == 0 {
			n := r.sotw.GetNode()
			if r.delta != nil {
				n = r.delta.GetNode()
			}
			if n.GetId() != testNode || n.GetCluster() != "checkout" || n.GetUserAgentName() != "envoy" {
				t.Errorf("first request node %v", n)
			}
		}
		if !seen[typ] {
			seen[typ] = true
			order = append(order, typ)
		}
	}
	want := []string{typeCluster, typeEndpoint, typeListener, typeRoute}
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Errorf("first requests in order %v, want %v", order, want)
	}
}

func TestRejectedResourceNACKsWholeResponse(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			x := startServer(t)
			v1 := x.setContent(t, baseResources(time.Second))
			e := newModel(t, x, Options{Mode: m.mode, InitialFetchTimeout: -1,
				Reject: func(typeURL, name string, _ proto.Message) error {
					if typeURL == typeCluster && name == "bad" {
						return errors.New("cluster bad is not allowed here")
					}
					return nil
				}})
			warmWith(t, e)
			before := e.Stats()

			// One good change and one rejected cluster in the same response.
			res := baseResources(2 * time.Second)
			res[typeCluster] = append(res[typeCluster], edsCluster("bad", time.Second))
			res[typeEndpoint] = append(res[typeEndpoint], assignment("bad", 9090))
			x.setContent(t, res)
			waitFor(t, e, "CDS NACK", func() bool { return e.Stats().ByType[typeCluster].NACKs > 0 })

			c := e.Config()
			if _, ok := c.Clusters["bad"]; ok || connectTimeout(c, "payments") != time.Second {
				t.Fatalf("rejected response was partly applied: %v, payments %v", c.Clusters, connectTimeout(c, "payments"))
			}
			if len(e.WarmingClusters()) != 0 {
				t.Fatalf("warming after a NACK: %v", e.WarmingClusters())
			}
			if s := e.Stats(); !strings.Contains(s.LastNACK, "cluster bad is not allowed") {
				t.Fatalf("LastNACK %q", s.LastNACK)
			}
			var nack *wireReq
			eventually(t, "NACK on the wire", func() bool {
				for _, r := range x.requests() {
					if r.sotw.GetErrorDetail() != nil || r.delta.GetErrorDetail() != nil {
						nack = &r
						return true
					}
				}
				return false
			})
			switch {
			case nack.sotw != nil:
				if nack.sotw.VersionInfo != v1[typeCluster] || nack.sotw.ResponseNonce == "" ||
					!strings.Contains(nack.sotw.ErrorDetail.Message, "bad") {
					t.Fatalf("SotW NACK %v: want version_info %q (last accepted), a nonce and the error", nack.sotw, v1[typeCluster])
				}
			default:
				if nack.delta.ResponseNonce == "" || !strings.Contains(nack.delta.ErrorDetail.Message, "bad") {
					t.Fatalf("delta NACK %v", nack.delta)
				}
			}
			if got := e.Stats().ByType[typeEndpoint].NACKs; got != before.ByType[typeEndpoint].NACKs {
				t.Fatalf("EDS NACKed too: %d", got)
			}

			// The next good version is accepted normally (with EDS re-sent, see
			// TestClusterChangeStallsOnContentVersionedEDS for what happens otherwise).
			next := baseResources(3 * time.Second)
			if m.mode == Delta {
				next[typeEndpoint] = []types.Resource{withPolicy(assignment("payments", 8080))}
			}
			x.setVersion(t, "3", next)
			waitFor(t, e, "next version applied", func() bool {
				return connectTimeout(e.Config(), "payments") == 3*time.Second && e.AllWarm()
			})
		})
	}
}

func TestInvalidResourceFailsValidation(t *testing.T) {
	x := startServer(t)
	x.setContent(t, baseResources(time.Second))
	e := newModel(t, x, Options{InitialFetchTimeout: -1})
	warmWith(t, e)

	res := baseResources(2 * time.Second)
	res[typeCluster] = append(res[typeCluster], &clusterv3.Cluster{
		Name: "negative", ConnectTimeout: durationpb.New(-time.Second),
	})
	x.setContent(t, res)
	waitFor(t, e, "CDS NACK", func() bool { return e.Stats().ByType[typeCluster].NACKs > 0 })
	if s := e.Stats(); !strings.Contains(s.LastNACK, "ConnectTimeout") {
		t.Fatalf("LastNACK %q does not name the violated field", s.LastNACK)
	}
	if connectTimeout(e.Config(), "payments") != time.Second {
		t.Fatal("previous state not kept")
	}
	x.setContent(t, baseResources(time.Second)) // stop the server's resend loop
}

func TestReconnectResumesFromAcceptedVersions(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			x := startServer(t)
			v := x.setContent(t, baseResources(time.Second))
			e := newModel(t, x, Options{Mode: m.mode, InitialFetchTimeout: 300 * time.Millisecond})
			warmWith(t, e)
			if err := e.Reconnect(); err != nil {
				t.Fatal(err)
			}
			eventually(t, "second stream's requests", func() bool {
				n := 0
				for _, r := range x.requests() {
					if r.stream == 2 {
						n++
					}
				}
				return n >= 4
			})
			var first []wireReq
			seen := map[string]bool{}
			for _, r := range x.requests() {
				typ := r.sotw.GetTypeUrl() + r.delta.GetTypeUrl()
				if r.stream == 2 && !seen[typ] {
					seen[typ] = true
					first = append(first, r)
				}
			}
			for i, r := range first {
				if r.sotw != nil {
					q := r.sotw
					if q.VersionInfo != v[q.TypeUrl] || q.ResponseNonce != "" || (q.Node != nil) != (i == 0) {
						t.Errorf("resumed %s: version %q (want %q), nonce %q, node %v", q.TypeUrl,
							q.VersionInfo, v[q.TypeUrl], q.ResponseNonce, q.Node != nil)
					}
					continue
				}
				q := r.delta
				name := map[string]string{typeCluster: "payments", typeEndpoint: "payments",
					typeListener: "outbound", typeRoute: "outbound"}[q.TypeUrl]
				if q.InitialResourceVersions[name] == "" || q.ResponseNonce != "" {
					t.Errorf("resumed %s: initial_resource_versions %v, nonce %q", q.TypeUrl,
						q.InitialResourceVersions, q.ResponseNonce)
				}
				if wild := q.TypeUrl == typeCluster || q.TypeUrl == typeListener; !wild &&
					strings.Join(q.ResourceNamesSubscribe, ",") != name {
					t.Errorf("resumed %s subscribes %v", q.TypeUrl, q.ResourceNamesSubscribe)
				}
			}
			if len(first) != 4 {
				t.Fatalf("resumed %d types, want 4", len(first))
			}
			// Nothing changed on the server: the model stays warm and never times out.
			time.Sleep(500 * time.Millisecond)
			if s := e.Stats(); !e.AllWarm() || s.NACKs != 0 || s.ClustersWarmedByTimeout+s.ListenersWarmedByTimeout != 0 {
				t.Fatalf("after reconnect: warm %v, stats %+v", e.AllWarm(), s)
			}
		})
	}
}

// TestFleetSharesOneConnection runs many instances over one client connection, as a
// fleet simulator does.
func TestFleetSharesOneConnection(t *testing.T) {
	x := startServer(t)
	x.setContent(t, baseResources(time.Second))
	conn, err := grpc.NewClient(x.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	fleet := make([]*Envoy, 100)
	for i := range fleet {
		mode := SotW
		if i%2 == 1 {
			mode = Delta
		}
		// Every instance is the same node as far as the snapshot cache's IDHash goes.
		e := New(x.addr, Options{Mode: mode, NodeID: testNode, NodeCluster: "checkout", Conn: conn})
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Close() })
		fleet[i] = e
	}
	for _, e := range fleet {
		warmWith(t, e)
	}
	// Closing one instance leaves the shared connection to the others.
	if err := fleet[0].Close(); err != nil {
		t.Fatal(err)
	}
	if err := fleet[1].Reconnect(); err != nil {
		t.Fatal(err)
	}
	warmWith(t, fleet[1])
}
