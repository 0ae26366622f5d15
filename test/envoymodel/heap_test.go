package envoymodel

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

// fleetResources is a proxy's configuration as a fleet of n services gives it:
// n EDS clusters with their assignments (three endpoints each), one outbound
// listener and one route configuration with a virtual host per service.
func fleetResources(n int) resources {
	res := resources{
		typeListener: {httpListener("outbound", "outbound", "outbound", 15001)},
	}
	rc := &routev3.RouteConfiguration{Name: "outbound"}
	for i := range n {
		name := fmt.Sprintf("service-%03d", i)
		res[typeCluster] = append(res[typeCluster], edsCluster(name, time.Second))
		res[typeEndpoint] = append(res[typeEndpoint], assignment(name, 8080, 8081, 8082))
		vh := routeConfig("", name).VirtualHosts[0]
		vh.Domains = append(vh.Domains, name+".svc", name+":8080")
		act := vh.Routes[0].GetRoute()
		act.Timeout = durationpb.New(3 * time.Second)
		act.RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx,reset,connect-failure"}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	res[typeRoute] = []types.Resource{rc}
	return res
}

var heapProfile = flag.String("envoymodel.heapprofile", "", "BenchmarkFleetHeap: write the live heap, with every instance warm, to this file (suffixed with the mode)")

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkFleetHeap starts instances against go-control-plane's server, 100
// services each, and reports the live heap per instance once all are warm
// (client and server side, both in this process) and the time to warm them.
// Run with -benchtime=1x; -memprofile shows where the heap goes.
func BenchmarkFleetHeap(b *testing.B) {
	if *heapProfile != "" {
		runtime.MemProfileRate = 4096
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			const instances = 200
			x := startServerRecording(b, false)
			x.setVersion(b, "1", fleetResources(100))
			conns := make([]*grpc.ClientConn, instances/100)
			for i := range conns {
				c, err := grpc.NewClient(x.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					b.Fatal(err)
				}
				conns[i] = c
				defer c.Close()
			}
			for range b.N {
				base := heapInUse()
				fleet := make([]*Envoy, instances)
				start := time.Now()
				for i := range fleet {
					e := New(x.addr, Options{Mode: m.mode, NodeID: testNode, NodeCluster: "checkout", Conn: conns[i%len(conns)]})
					if err := e.Start(); err != nil {
						b.Fatal(err)
					}
					fleet[i] = e
				}
				for _, e := range fleet {
					waitAllWarm(b, e)
				}
				b.ReportMetric(float64(time.Since(start).Microseconds())/instances, "µs-to-warm/instance")
				after := heapInUse()
				b.ReportMetric(float64(after-base)/instances/1024, "heap-KB/instance")
				if *heapProfile != "" {
					writeHeapProfile(b, *heapProfile+"."+m.name)
				}
				for _, e := range fleet {
					_ = e.Close()
				}
				runtime.KeepAlive(fleet)
			}
		})
	}
}

func waitAllWarm(b *testing.B, e *Envoy) {
	b.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		c := e.Config()
		if len(c.Clusters) == 100 && len(c.Endpoints) == 100 && len(c.Routes) == 1 && len(c.Listeners) == 1 && e.AllWarm() {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("not warm: %d clusters, stats %+v, err %v", len(c.Clusters), e.Stats(), e.Err())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}
