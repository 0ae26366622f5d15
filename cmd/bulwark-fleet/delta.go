package main

import (
	"context"
	"fmt"
	"maps"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
)

// runDelta runs one incremental (delta) ADS stream as Envoy does: wildcard
// clusters and listeners, then endpoints and route configurations by name,
// subscribing and unsubscribing as the clusters and listeners come and go.
// A new stream sends the versions of the clusters and listeners it has
// (initial_resource_versions), so the server may skip what has not changed;
// endpoints and route configurations are asked for afresh, so every stream
// proves it holds current config by ACKing them.
func (p *proxy) runDelta(ctx context.Context) error {
	if p.f.opt.flavor != flavorEnvoy {
		return fmt.Errorf("delta is simulated for Envoy only")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(p.conn).DeltaAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	p.begin()
	p.mu.Lock()
	for _, t := range []int{tCDS, tLDS} {
		if p.known[t] == nil {
			p.known[t] = map[string]string{}
		}
	}
	if p.deltaRefs == nil {
		p.deltaRefs = map[string]refs{}
	}
	p.mu.Unlock()
	send := func(req *discoveryv3.DeltaDiscoveryRequest) error {
		req.Node = p.node // Envoy sends its node on every request by default
		return s.Send(req)
	}
	for _, t := range []int{tCDS, tEDS, tLDS, tRDS} {
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL[t]}
		switch {
		case p.wildcard(t):
			p.mu.Lock()
			req.InitialResourceVersions = maps.Clone(p.known[t])
			p.mu.Unlock()
		case len(p.subscribed(t)) > 0:
			req.ResourceNamesSubscribe = p.subscribed(t)
		default:
			continue
		}
		if err := send(req); err != nil {
			return err
		}
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		t := typeIndex(resp.GetTypeUrl())
		if t < 0 {
			return fmt.Errorf("response of unexpected type %q", resp.GetTypeUrl())
		}
		if t == tCDS || t == tLDS {
			if err := p.absorb(t, resp); err != nil {
				return err
			}
			follow, names := tEDS, func(r refs) []string { return r.eds }
			if t == tLDS {
				follow, names = tRDS, func(r refs) []string { return r.routes }
			}
			want := p.referenced(t, names)
			if old, changed := p.subscribe(follow, want); changed {
				added, removed := want.diff(old)
				if err := send(&discoveryv3.DeltaDiscoveryRequest{
					TypeUrl: typeURL[follow], ResourceNamesSubscribe: added, ResourceNamesUnsubscribe: removed,
				}); err != nil {
					return err
				}
			}
		}
		if err := send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		p.recordAck(t, resp.GetSystemVersionInfo())
	}
}

// absorb folds a delta response of a wildcard type into what the proxy knows.
func (p *proxy) absorb(t int, resp *discoveryv3.DeltaDiscoveryResponse) error {
	parsed := make([]refs, len(resp.GetResources()))
	for i, r := range resp.GetResources() {
		var err error
		if parsed[i], err = p.f.parser.parse(r.GetResource()); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, r := range resp.GetResources() {
		p.known[t][r.GetName()] = r.GetVersion()
		p.deltaRefs[typeName[t]+"/"+r.GetName()] = parsed[i]
	}
	for _, name := range resp.GetRemovedResources() {
		delete(p.known[t], name)
		delete(p.deltaRefs, typeName[t]+"/"+name)
	}
	return nil
}

// referenced returns the names that the known resources of type t refer to.
func (p *proxy) referenced(t int, names func(refs) []string) nameSet {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for name := range p.known[t] {
		out = append(out, names(p.deltaRefs[typeName[t]+"/"+name])...)
	}
	return makeNameSet(out)
}
