package store

import (
	"context"
	"fmt"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bulwarkmesh/bulwark/policies"
)

// ApplyAs is Apply with who recorded on the experiments it starts or stops
// (status.startedBy, and status.stoppedBy in the history).
func (s *Store) ApplyAs(ctx context.Context, ops []Op, who string) (int64, error) {
	return s.apply(ctx, ops, who, false)
}

// RegisteredEndpoint is a self-registered instance as the store holds it.
type RegisteredEndpoint struct {
	Service  string            `json:"service"`
	Endpoint policies.Endpoint `json:"endpoint"`
	// Revision is the mod revision of the registration.
	Revision int64 `json:"revision"`
	// TTLSeconds is what is left of the instance's lease; -1 when the key
	// carries no lease.
	TTLSeconds int64 `json:"ttlSeconds"`
}

// ListEndpoints returns the self-registered instances of a service (every
// service when service is ""), sorted by service then instance, with the
// store revision they were read at. Values that fail to decode are logged
// and skipped.
func (s *Store) ListEndpoints(ctx context.Context, service string) ([]RegisteredEndpoint, int64, error) {
	dir := s.dir(dirEndpoints)
	if service != "" {
		if err := checkSegment("service", service); err != nil {
			return nil, 0, err
		}
		dir += service + "/"
	}
	type leased struct {
		ep    RegisteredEndpoint
		lease int64
	}
	var found []leased
	rev, err := s.rangeAt(ctx, dir, clientv3.GetPrefixRangeEnd(dir), 0, func(k, v []byte, mod, lease int64) {
		ref, ok := s.parseKey(string(k))
		if !ok || ref.kind != KindEndpoint {
			return
		}
		ep, err := decodeEndpoint(string(k), ref, v)
		if err != nil {
			s.log.Warn("skipping a registered endpoint", "error", err)
			return
		}
		found = append(found, leased{RegisteredEndpoint{Service: ref.service, Endpoint: ep, Revision: mod, TTLSeconds: -1}, lease})
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list endpoints: %w", err)
	}
	out := make([]RegisteredEndpoint, 0, len(found))
	for _, f := range found {
		if f.lease != 0 {
			ttl, err := s.cli.TimeToLive(ctx, clientv3.LeaseID(f.lease))
			if err != nil {
				return nil, 0, fmt.Errorf("list endpoints: lease of %s/%s: %w", f.ep.Service, f.ep.Endpoint.Instance, err)
			}
			if ttl.TTL < 0 {
				continue // the lease ended after the read
			}
			f.ep.TTLSeconds = ttl.TTL
		}
		out = append(out, f.ep)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return strings.Compare(out[i].Endpoint.Instance, out[j].Endpoint.Instance) < 0
	})
	return out, rev, nil
}
