package snapshot

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/bulwarkmesh/bulwark/controlplane/internal/meshtest"
	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// BenchmarkGroupBuild measures one group's full build as the builder runs
// it on every change: resolve, translate, check, encode and seal, hash.
func BenchmarkGroupBuild(b *testing.B) {
	for _, n := range []int{100, 1000} {
		set := meshtest.MeshSet(n)
		bl := NewBuilder(slog.New(slog.DiscardHandler), xdsserver.NewCache(), nil, metrics.New())
		bl.set = set
		k := xdsserver.GroupKey{Flavor: ir.FlavorEnvoy, Service: "svc-00000", Outbound: xdsserver.DefaultOutbound}
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bl.prepare(k); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
