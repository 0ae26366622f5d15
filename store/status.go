package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// statusLease is the lease under which one replica writes its status.
type statusLease struct {
	id     clientv3.LeaseID
	cancel context.CancelFunc
}

// PutStatus writes the status of one proxy (node) as seen by one replica.
// Every status of a replica shares one lease, kept alive by the Store until
// Close, so a replica that dies takes its status with it after StatusTTL.
func (s *Store) PutStatus(ctx context.Context, replica, node string, value []byte) error {
	key, err := s.statusKey(replica, node)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		sl, err := s.statusLeaseFor(ctx, replica)
		if err != nil {
			return err
		}
		_, err = s.cli.Put(ctx, key, string(value), clientv3.WithLease(sl.id))
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && attempt == 0 {
			// The lease ended (etcd was out of reach for longer than its TTL).
			s.dropStatusLease(replica, sl)
			continue
		}
		if err != nil {
			return fmt.Errorf("put status %s/%s: %w", replica, node, err)
		}
		return nil
	}
}

// One PutStatuses transaction holds at most statusBatchOps puts and about
// statusBatchBytes: etcd keeps recent raft entries in memory, so a status
// write must stay a small entry however many proxies a flush carries.
const (
	statusBatchOps   = 16
	statusBatchBytes = 32 << 10
)

// PutStatuses writes the status of many proxies of one replica (node →
// value) under the replica's lease, a few proxies per transaction: one
// commit per batch instead of one per proxy, and small raft entries.
// Batches are not atomic together; on an error, some may have been written.
func (s *Store) PutStatuses(ctx context.Context, replica string, values map[string][]byte) error {
	var ops []clientv3.Op
	var keys, nodes []string
	size := 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		defer func() { ops, keys, nodes, size = ops[:0], keys[:0], nodes[:0], 0 }()
		for attempt := 0; ; attempt++ {
			sl, err := s.statusLeaseFor(ctx, replica)
			if err != nil {
				return err
			}
			for i := range ops {
				ops[i] = clientv3.OpPut(keys[i], string(values[nodes[i]]), clientv3.WithLease(sl.id))
			}
			_, err = s.cli.Txn(ctx).Then(ops...).Commit()
			if errors.Is(err, rpctypes.ErrLeaseNotFound) && attempt == 0 {
				s.dropStatusLease(replica, sl)
				continue
			}
			if err != nil {
				return fmt.Errorf("put the status of %d proxies of %s: %w", len(ops), replica, err)
			}
			return nil
		}
	}
	for node, v := range values {
		key, err := s.statusKey(replica, node)
		if err != nil {
			return err
		}
		if len(ops) >= min(s.opts.MaxTxnOps, statusBatchOps) || (len(ops) > 0 && size+len(key)+len(v) > statusBatchBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		ops = append(ops, clientv3.Op{})
		keys, nodes = append(keys, key), append(nodes, node)
		size += len(key) + len(v)
	}
	return flush()
}

// DeleteStatus removes the status of one proxy.
func (s *Store) DeleteStatus(ctx context.Context, replica, node string) error {
	key, err := s.statusKey(replica, node)
	if err != nil {
		return err
	}
	if _, err := s.cli.Delete(ctx, key); err != nil {
		return fmt.Errorf("delete status %s/%s: %w", replica, node, err)
	}
	return nil
}

// ListStatus returns the status written by every live replica:
// replica → node → value.
func (s *Store) ListStatus(ctx context.Context) (map[string]map[string][]byte, error) {
	dir := s.dir(dirStatus)
	out := map[string]map[string][]byte{}
	_, err := s.rangeAt(ctx, dir, clientv3.GetPrefixRangeEnd(dir), 0, func(k, v []byte, _, _ int64) {
		r, n, ok := strings.Cut(strings.TrimPrefix(string(k), dir), "/")
		replica, err1 := url.PathUnescape(r)
		node, err2 := url.PathUnescape(n)
		if !ok || err1 != nil || err2 != nil {
			s.log.Warn("skipping a malformed status key", "key", string(k))
			return
		}
		if out[replica] == nil {
			out[replica] = map[string][]byte{}
		}
		out[replica][node] = v
	})
	if err != nil {
		return nil, fmt.Errorf("list status: %w", err)
	}
	return out, nil
}

// statusLeaseFor returns the replica's status lease, granting it and
// starting its keepalive on first use.
func (s *Store) statusLeaseFor(ctx context.Context, replica string) (*statusLease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("store closed")
	}
	if sl := s.status[replica]; sl != nil {
		return sl, nil
	}
	lease, err := s.cli.Grant(ctx, int64(math.Ceil(s.opts.StatusTTL.Seconds())))
	if err != nil {
		return nil, fmt.Errorf("grant the status lease of %s: %w", replica, err)
	}
	kctx, cancel := context.WithCancel(s.ctx)
	ch, err := s.cli.KeepAlive(kctx, lease.ID)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("keep the status lease of %s alive: %w", replica, err)
	}
	sl := &statusLease{id: lease.ID, cancel: cancel}
	s.status[replica] = sl
	s.wg.Add(1)
	go s.keepStatus(replica, sl, ch)
	return sl, nil
}

// keepStatus drains a status lease's keepalive responses; when they stop
// while the Store is open, the lease is lost and OnStatusLost is told.
func (s *Store) keepStatus(replica string, sl *statusLease, ch <-chan *clientv3.LeaseKeepAliveResponse) {
	defer s.wg.Done()
	for range ch {
	}
	sl.cancel()
	if s.ctx.Err() != nil {
		return // closing
	}
	s.dropStatusLease(replica, sl)
	s.log.Warn("status lease lost; the replica's status must be written again", "replica", replica)
	if s.opts.OnStatusLost != nil {
		s.opts.OnStatusLost(replica)
	}
}

func (s *Store) dropStatusLease(replica string, sl *statusLease) {
	s.mu.Lock()
	if s.status[replica] == sl {
		delete(s.status, replica)
	}
	s.mu.Unlock()
	sl.cancel()
}
