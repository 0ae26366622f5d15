package xdsserver

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// TypeURLs lists the resource types a snapshot carries.
var TypeURLs = []resourcev3.Type{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType}

// NewSnapshot builds a cache snapshot whose per-type versions are content
// hashes: identical content, identical version, nothing pushed. Every
// resource is encoded once, for the hash, and sealed with that encoding so
// that no stream encodes it again (see sealedResource).
func NewSnapshot(res *translate.Resources) (*cachev3.Snapshot, map[string]string, error) {
	return (*Sealer)(nil).Snapshot(res)
}

// Snapshot is NewSnapshot, reusing what z sealed before; a nil Sealer
// encodes everything.
func (z *Sealer) Snapshot(res *translate.Resources) (*cachev3.Snapshot, map[string]string, error) {
	byType := res.ByType()
	snap := &cachev3.Snapshot{}
	versions := make(map[string]string, len(TypeURLs))
	for _, t := range TypeURLs {
		sealed, v, err := z.sealAll(byType[t])
		if err != nil {
			return nil, nil, err
		}
		idx := cachev3.GetResponseType(t)
		snap.Resources[idx] = cachev3.NewResources(v, sealed)
		versions[t] = v
	}
	return snap, versions, nil
}

// sealAll encodes resources deterministically, seals each with its
// encoding, and hashes them by name and encoding into a version.
func (z *Sealer) sealAll(items []types.Resource) ([]types.Resource, string, error) {
	sealed := make([]*sealedResource, len(items))
	for i, r := range items {
		name := cachev3.GetResourceName(r)
		s, err := z.seal(r, name)
		if err != nil {
			return nil, "", fmt.Errorf("encode %s: %w", name, err)
		}
		sealed[i] = s
	}
	sort.Slice(sealed, func(i, j int) bool { return sealed[i].name < sealed[j].name })
	h := sha256.New()
	out := make([]types.Resource, len(sealed))
	for i, s := range sealed {
		fmt.Fprintf(h, "%s\x00%d\x00", s.name, len(s.raw))
		h.Write(s.raw)
		out[i] = s
	}
	return out, hex.EncodeToString(h.Sum(nil))[:16], nil
}
