package main

import (
	"fmt"
	"hash/maphash"
	"slices"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	aggregatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/clusters/aggregate/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// refs is what one resource makes a proxy ask for next: a cluster its EDS
// name (or an aggregate cluster its children), a listener its route
// configurations, a route configuration its clusters.
type refs struct {
	eds      []string // ClusterLoadAssignment names
	clusters []string // Cluster names (aggregate children, route targets)
	routes   []string // RouteConfiguration names
}

// parser extracts references from resources. Every stream of a group
// receives the same bytes, so results are memoized by the hash of the
// resource's bytes: thousands of streams cost one decode per distinct
// resource. The memo is bounded and simply reset when full.
type parser struct {
	seed maphash.Seed

	mu   sync.Mutex
	memo map[uint64]refs
}

const parserMemoMax = 1 << 16

func newParser() *parser {
	return &parser{seed: maphash.MakeSeed(), memo: map[uint64]refs{}}
}

// parse returns the references of one resource.
func (p *parser) parse(a *anypb.Any) (refs, error) {
	var h maphash.Hash
	h.SetSeed(p.seed)
	h.WriteString(a.GetTypeUrl())
	h.Write(a.GetValue())
	key := h.Sum64()
	p.mu.Lock()
	r, ok := p.memo[key]
	p.mu.Unlock()
	if ok {
		return r, nil
	}
	r, err := decodeRefs(a)
	if err != nil {
		return refs{}, err
	}
	p.mu.Lock()
	if len(p.memo) >= parserMemoMax {
		p.memo = map[uint64]refs{}
	}
	p.memo[key] = r
	p.mu.Unlock()
	return r, nil
}

func decodeRefs(a *anypb.Any) (refs, error) {
	var r refs
	switch a.GetTypeUrl() {
	case typeURL[tCDS]:
		c := &clusterv3.Cluster{}
		if err := proto.Unmarshal(a.GetValue(), c); err != nil {
			return r, fmt.Errorf("decode cluster: %w", err)
		}
		switch {
		case c.GetType() == clusterv3.Cluster_EDS:
			name := c.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = c.GetName()
			}
			r.eds = []string{name}
		case c.GetClusterType() != nil:
			agg := &aggregatev3.ClusterConfig{}
			if err := c.GetClusterType().GetTypedConfig().UnmarshalTo(agg); err == nil {
				r.clusters = agg.GetClusters()
			}
		}
	case typeURL[tLDS]:
		l := &listenerv3.Listener{}
		if err := proto.Unmarshal(a.GetValue(), l); err != nil {
			return r, fmt.Errorf("decode listener: %w", err)
		}
		var hcms []*anypb.Any
		if api := l.GetApiListener().GetApiListener(); api != nil {
			hcms = append(hcms, api)
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if tc := f.GetTypedConfig(); tc != nil {
					hcms = append(hcms, tc)
				}
			}
		}
		for _, tc := range hcms {
			hcm := &hcmv3.HttpConnectionManager{}
			if tc.UnmarshalTo(hcm) != nil {
				continue
			}
			if name := hcm.GetRds().GetRouteConfigName(); name != "" {
				r.routes = append(r.routes, name)
			}
		}
	case typeURL[tRDS]:
		rc := &routev3.RouteConfiguration{}
		if err := proto.Unmarshal(a.GetValue(), rc); err != nil {
			return r, fmt.Errorf("decode route configuration: %w", err)
		}
		for _, vh := range rc.GetVirtualHosts() {
			for _, rt := range vh.GetRoutes() {
				act := rt.GetRoute()
				if c := act.GetCluster(); c != "" {
					r.clusters = append(r.clusters, c)
				}
				for _, wc := range act.GetWeightedClusters().GetClusters() {
					r.clusters = append(r.clusters, wc.GetName())
				}
			}
		}
	}
	return r, nil
}

// nameSet is a sorted, duplicate-free list of resource names.
type nameSet []string

// makeNameSet sorts and deduplicates names.
func makeNameSet(names []string) nameSet {
	s := slices.Clone(names)
	slices.Sort(s)
	return slices.Compact(s)
}

func (s nameSet) equal(o nameSet) bool { return slices.Equal(s, o) }

// diff returns the names of s missing from old, and those of old missing from s.
func (s nameSet) diff(old nameSet) (added, removed []string) {
	for _, n := range s {
		if _, ok := slices.BinarySearch(old, n); !ok {
			added = append(added, n)
		}
	}
	for _, n := range old {
		if _, ok := slices.BinarySearch(s, n); !ok {
			removed = append(removed, n)
		}
	}
	return added, removed
}
