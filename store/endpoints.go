package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bulwarkmesh/bulwark/policies"
)

// RegisterEndpoint registers (or re-registers) an instance of a service under
// a lease of ttl, rounded up to whole seconds (etcd may raise very short TTLs
// to its minimum, about two seconds with default settings). The instance
// disappears when the lease ends unless KeepAliveEndpoint renews it. It
// returns the revision of the write.
func (s *Store) RegisterEndpoint(ctx context.Context, service, instance string, ep policies.Endpoint, ttl time.Duration) (int64, error) {
	key, err := s.endpointKey(service, instance)
	if err != nil {
		return 0, err
	}
	if ep.Instance != "" && ep.Instance != instance {
		return 0, policies.Violations{{Field: "instance", Message: fmt.Sprintf("%q differs from the registered instance %q", ep.Instance, instance)}}
	}
	if err := checkEndpoint(ep); err != nil {
		return 0, err
	}
	if ttl <= 0 {
		return 0, policies.Violations{{Field: "ttl", Message: "must be positive"}}
	}
	ep.Instance = ""
	val, err := json.Marshal(ep)
	if err != nil {
		return 0, err
	}
	prev, err := s.cli.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("register %s/%s: %w", service, instance, err)
	}
	lease, err := s.cli.Grant(ctx, int64(math.Ceil(ttl.Seconds())))
	if err != nil {
		return 0, fmt.Errorf("register %s/%s: grant a lease: %w", service, instance, err)
	}
	resp, err := s.cli.Put(ctx, key, string(val), clientv3.WithLease(lease.ID))
	if err != nil {
		s.revoke(lease.ID)
		return 0, fmt.Errorf("register %s/%s: %w", service, instance, writeError(err))
	}
	if len(prev.Kvs) > 0 && prev.Kvs[0].Lease != 0 && clientv3.LeaseID(prev.Kvs[0].Lease) != lease.ID {
		s.revoke(clientv3.LeaseID(prev.Kvs[0].Lease)) // the key moved to the new lease
	}
	return resp.Header.Revision, nil
}

// KeepAliveEndpoint renews a registered instance's lease and returns the TTL
// it now has. ErrNotFound when the instance is not registered (or its lease
// already ended).
func (s *Store) KeepAliveEndpoint(ctx context.Context, service, instance string) (time.Duration, error) {
	key, err := s.endpointKey(service, instance)
	if err != nil {
		return 0, err
	}
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("keepalive %s/%s: %w", service, instance, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, fmt.Errorf("endpoint %s/%s: %w", service, instance, ErrNotFound)
	}
	id := clientv3.LeaseID(resp.Kvs[0].Lease)
	if id == 0 {
		return 0, fmt.Errorf("endpoint %s/%s is not leased (written without a TTL); register it again", service, instance)
	}
	ka, err := s.cli.KeepAliveOnce(ctx, id)
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return 0, fmt.Errorf("endpoint %s/%s: lease ended: %w", service, instance, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("keepalive %s/%s: %w", service, instance, err)
	}
	return time.Duration(ka.TTL) * time.Second, nil
}

// DeregisterEndpoint removes a registered instance at once and ends its
// lease. ErrNotFound when it is not registered.
func (s *Store) DeregisterEndpoint(ctx context.Context, service, instance string) (int64, error) {
	key, err := s.endpointKey(service, instance)
	if err != nil {
		return 0, err
	}
	resp, err := s.cli.Delete(ctx, key, clientv3.WithPrevKV())
	if err != nil {
		return 0, fmt.Errorf("deregister %s/%s: %w", service, instance, writeError(err))
	}
	if len(resp.PrevKvs) == 0 {
		return 0, fmt.Errorf("endpoint %s/%s: %w", service, instance, ErrNotFound)
	}
	if id := clientv3.LeaseID(resp.PrevKvs[0].Lease); id != 0 {
		s.revoke(id)
	}
	return resp.Header.Revision, nil
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
