package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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
		return 0, fmt.Errorf("register %s/%s: %w", service, instance, err)
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
		return 0, fmt.Errorf("deregister %s/%s: %w", service, instance, err)
	}
	if len(resp.PrevKvs) == 0 {
		return 0, fmt.Errorf("endpoint %s/%s: %w", service, instance, ErrNotFound)
	}
	if id := clientv3.LeaseID(resp.PrevKvs[0].Lease); id != 0 {
		s.revoke(id)
	}
	return resp.Header.Revision, nil
}
