package seal

import (
	"fmt"
	"testing"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/internal/meshtest"
)

// BenchmarkSnapshotBuild measures what a build adds after translation:
// encoding every resource once, sealing it, hashing the versions.
func BenchmarkSnapshotBuild(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		res := meshtest.RenderMesh(b, n)
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := NewSnapshot(res); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPushPerStream measures the control plane's work for one stream
// of a group when its snapshot changes: the cache's response for every
// type, serialized. Sealed resources are encoded once per snapshot, not per
// stream; "unsealed" is what go-control-plane does on its own.
func BenchmarkPushPerStream(b *testing.B) {
	res := meshtest.RenderMesh(b, 1000)
	sealed, _, err := NewSnapshot(res)
	require.NoError(b, err)
	plain, err := cachev3.NewSnapshot("v1", res.ByType())
	require.NoError(b, err)
	for _, c := range []struct {
		name string
		snap *cachev3.Snapshot
	}{{"sealed", sealed}, {"unsealed", plain}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				for _, t := range TypeURLs {
					pushOnce(b, c.snap, t)
				}
			}
		})
	}
}
