package main

import (
	"context"
	"fmt"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
)

// sotwStream is one state-of-the-world ADS stream of a proxy.
type sotwStream struct {
	p        *proxy
	s        discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	nonce    [numTypes]string
	sentNode bool
	// gRPC only: the clusters the routes name, and the children of the
	// aggregate clusters among them.
	routeClusters, children nameSet
}

// runSotW runs one SotW stream until it fails or ctx ends.
//
// Envoy subscribes to every cluster and listener (wildcard), then to the
// endpoints of its EDS clusters and the route configurations of its
// listeners. Before ACKing a CDS or LDS response it asks for the EDS or RDS
// names that response introduced, as Envoy does. A proxyless gRPC client
// asks for the listeners of its targets by name, then for the route
// configurations they name, the clusters those routes (and aggregate
// clusters) name, and their endpoints. Every response is ACKed with its
// version and nonce; nothing is ever NACKed. On a new stream the last ACKed
// version of every type is sent, with every name already subscribed.
func (p *proxy) runSotW(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(p.conn).StreamAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return err
	}
	p.begin()
	st := &sotwStream{p: p, s: s}
	if p.f.opt.flavor == flavorGRPC {
		p.subscribe(tLDS, makeNameSet(p.f.opt.grpcTargets))
		st.routeClusters = p.subscribed(tCDS)
	}
	for _, t := range []int{tCDS, tEDS, tLDS, tRDS} {
		if p.wildcard(t) || len(p.subscribed(t)) > 0 {
			if err := st.request(t); err != nil {
				return err
			}
		}
	}
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		if err := st.handle(resp); err != nil {
			return err
		}
	}
}

// request sends a subscription for type t: the last ACKed version, the
// latest nonce received on this stream, and the subscribed names.
func (st *sotwStream) request(t int) error {
	st.p.mu.Lock()
	version := st.p.acked[t]
	st.p.mu.Unlock()
	return st.send(t, version, st.nonce[t])
}

func (st *sotwStream) send(t int, version, nonce string) error {
	req := &discoveryv3.DiscoveryRequest{
		TypeUrl:       typeURL[t],
		VersionInfo:   version,
		ResponseNonce: nonce,
		ResourceNames: st.p.subscribed(t),
	}
	// Envoy sends its node on every request; gRPC on the first only.
	if st.p.f.opt.flavor == flavorEnvoy || !st.sentNode {
		req.Node = st.p.node
		st.sentNode = true
	}
	return st.s.Send(req)
}

func (st *sotwStream) handle(resp *discoveryv3.DiscoveryResponse) error {
	t := typeIndex(resp.GetTypeUrl())
	if t < 0 {
		return fmt.Errorf("response of unexpected type %q", resp.GetTypeUrl())
	}
	st.nonce[t] = resp.GetNonce()
	var all refs
	if t != tEDS {
		for _, a := range resp.GetResources() {
			r, err := st.p.f.parser.parse(a)
			if err != nil {
				return err
			}
			all.eds = append(all.eds, r.eds...)
			all.clusters = append(all.clusters, r.clusters...)
			all.routes = append(all.routes, r.routes...)
		}
	}
	grpcFlavor := st.p.f.opt.flavor == flavorGRPC
	var follow []int // types whose subscription changed, asked for after the ACK
	switch t {
	case tCDS:
		if grpcFlavor {
			st.children = makeNameSet(all.clusters)
			st.p.subscribe(tCDS, makeNameSet(append(append([]string(nil), st.routeClusters...), st.children...)))
		}
		if _, changed := st.p.subscribe(tEDS, makeNameSet(all.eds)); changed {
			if !grpcFlavor {
				// Envoy asks for the new endpoints before it ACKs the clusters.
				if err := st.request(tEDS); err != nil {
					return err
				}
			} else {
				follow = append(follow, tEDS)
			}
		}
	case tLDS:
		if _, changed := st.p.subscribe(tRDS, makeNameSet(all.routes)); changed {
			if !grpcFlavor {
				if err := st.request(tRDS); err != nil {
					return err
				}
			} else {
				follow = append(follow, tRDS)
			}
		}
	case tRDS:
		if grpcFlavor {
			st.routeClusters = makeNameSet(all.clusters)
			if _, changed := st.p.subscribe(tCDS, makeNameSet(append(append([]string(nil), st.routeClusters...), st.children...))); changed {
				follow = append(follow, tCDS)
			}
		}
	}
	if err := st.send(t, resp.GetVersionInfo(), resp.GetNonce()); err != nil {
		return err
	}
	st.p.recordAck(t, resp.GetVersionInfo())
	for _, ft := range follow {
		if err := st.request(ft); err != nil {
			return err
		}
	}
	return nil
}
