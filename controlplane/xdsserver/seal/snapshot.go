package seal

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// TypeURLs lists the resource types a snapshot carries.
var TypeURLs = []resourcev3.Type{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType}

// NewSnapshot builds a cache snapshot whose versions are content hashes:
// identical content, identical version, nothing pushed. Every resource is
// encoded once, for the hash, and sealed with that encoding so that no
// stream encodes it again (see sealedResource).
//
// Envoy's cluster warming shapes the endpoint versions. When CDS adds or
// changes an EDS cluster, Envoy keeps the new cluster warming until an EDS
// response for it arrives after that CDS update; it re-sends its EDS
// request with the same names and version, which a purely content-versioned
// server does not answer when the endpoints did not change, so the cluster
// waits for initial_fetch_timeout (15 s) and then serves with no endpoints.
// So a load assignment's version also covers its cluster's, and the EDS
// version (state of the world) hashes the assignments' versions. A change to a cluster
// therefore always sends its endpoints again (Kuma's reconcile.go does the
// same). Listeners need no such rule: Envoy shares route configuration
// subscriptions by name, so a changed listener that keeps its route name
// does not warm, and a new route name is requested and answered as new.
func NewSnapshot(res *translate.Resources) (*cachev3.Snapshot, map[string]string, error) {
	return (*Sealer)(nil).Snapshot(res)
}

// Snapshot is NewSnapshot, reusing what z sealed before; a nil Sealer
// encodes everything.
func (z *Sealer) Snapshot(res *translate.Resources) (*cachev3.Snapshot, map[string]string, error) {
	byType := res.ByType()
	snap := &cachev3.Snapshot{VersionMap: make(map[string]map[string]string, len(TypeURLs))}
	versions := make(map[string]string, len(TypeURLs))
	sealed := make(map[string][]*sealedResource, len(TypeURLs))
	for _, t := range TypeURLs {
		ss, err := z.sealAll(byType[t])
		if err != nil {
			return nil, nil, err
		}
		sealed[t] = ss
	}
	for _, t := range TypeURLs {
		perName := make(map[string]string, len(sealed[t]))
		for _, s := range sealed[t] {
			perName[s.name] = s.version
		}
		snap.VersionMap[t] = perName
	}
	// A load assignment's version covers the cluster that uses it.
	clusterOf := make(map[string]string, len(sealed[resourcev3.ClusterType]))
	for _, s := range sealed[resourcev3.ClusterType] {
		if c, ok := s.Message.(*clusterv3.Cluster); ok && c.GetType() == clusterv3.Cluster_EDS {
			clusterOf[cmp.Or(c.GetEdsClusterConfig().GetServiceName(), c.GetName())] = s.version
		}
	}
	eds := snap.VersionMap[resourcev3.EndpointType]
	for name, v := range eds {
		if cv, ok := clusterOf[name]; ok {
			eds[name] = combine(v, cv)
		}
	}
	for _, t := range TypeURLs {
		// A type's version hashes its resources' versions, so it moves
		// exactly when one of them does (or one comes or goes): a delta
		// stream is then sent a response of that type, which it ACKs. The
		// endpoint version moves with an EDS cluster's change, not with a
		// change to a cluster that has no endpoints (an aggregate).
		v := typeVersion(sealed[t], snap.VersionMap[t])
		out := make([]types.Resource, len(sealed[t]))
		for i, s := range sealed[t] {
			out[i] = s
		}
		snap.Resources[cachev3.GetResponseType(t)] = cachev3.NewResources(v, out)
		versions[t] = v
	}
	return snap, versions, nil
}

// sealAll encodes resources deterministically and seals each with its
// encoding and content version, sorted by name.
func (z *Sealer) sealAll(items []types.Resource) ([]*sealedResource, error) {
	sealed := make([]*sealedResource, len(items))
	for i, r := range items {
		name := cachev3.GetResourceName(r)
		s, err := z.seal(r, name)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", name, err)
		}
		sealed[i] = s
	}
	sort.Slice(sealed, func(i, j int) bool { return sealed[i].name < sealed[j].name })
	return sealed, nil
}

// typeVersion hashes the names and versions of a type's resources.
func typeVersion(sealed []*sealedResource, perName map[string]string) string {
	h := sha256.New()
	for _, s := range sealed {
		fmt.Fprintf(h, "%s\x00%s\x00", s.name, perName[s.name])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// combine is the version of content that depends on two versions.
func combine(a, b string) string {
	h := sha256.Sum256([]byte(a + "\x00" + b))
	return hex.EncodeToString(h[:])[:16]
}
