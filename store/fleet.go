package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The fleet's shared state beyond resources: every replica's proxy status
// (status/<replica>/<node>, see status.go) and what proxies rejected
// (xds-rejections/<node>/<type>), each followed by a watch so that every
// replica sees the others' within a watch round trip.

// dirRejections sorts after status/, outside the resource watch's range.
const dirRejections = "xds-rejections"

// RejectionTTL is how long a rejection record outlives the last write of
// the replica that wrote it: a replica that stops leaves its records for
// the proxies that move to another replica, then they expire.
const RejectionTTL = 10 * time.Minute

// PairEvent is what WatchStatus and WatchRejections deliver. Their keys
// have two segments: a replica and a node for status, a node and a type for
// rejections.
type PairEvent struct {
	// Resync, when set, replaces everything known: first → second → value.
	Resync map[string]map[string][]byte
	// Changes in store order.
	Changes []PairChange
	// Err says the watch broke (etcd unreachable, or its member lost the
	// leader); what was delivered may be stale until the next event
	// without Err.
	Err error
}

// PairChange is one put (Value set) or delete (Value nil) of a key.
type PairChange struct {
	First, Second string
	Value         []byte
}

// WatchStatus follows every replica's proxy status: a Resync first (and
// after a compaction), then changes. The channel closes when ctx ends or
// the Store is closed.
func (s *Store) WatchStatus(ctx context.Context) <-chan PairEvent {
	return s.watchPairs(ctx, s.dir(dirStatus))
}

// WatchRejections follows the rejection records of every replica, as
// WatchStatus does: node → type → value.
func (s *Store) WatchRejections(ctx context.Context) <-chan PairEvent {
	return s.watchPairs(ctx, s.dir(dirRejections))
}

// PutRejections writes rejection records (node → type → value) under the
// replica's rejection lease (RejectionTTL, kept alive until Close and not
// revoked then).
func (s *Store) PutRejections(ctx context.Context, replica string, recs map[string]map[string][]byte) error {
	var ops []clientv3.Op
	var lease clientv3.LeaseID
	commit := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := s.cli.Txn(ctx).Then(ops...).Commit()
		ops = ops[:0]
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.mu.Lock()
			delete(s.rejections, replica)
			s.mu.Unlock()
		}
		if err != nil {
			return fmt.Errorf("put rejection records of %s: %w", replica, err)
		}
		return nil
	}
	for node, byType := range recs {
		for typ, v := range byType {
			if lease == 0 {
				var err error
				if lease, err = s.rejectionLease(ctx, replica); err != nil {
					return err
				}
			}
			if node == "" || typ == "" {
				return fmt.Errorf("a rejection record needs a node and a type (got %q, %q)", node, typ)
			}
			key := s.dir(dirRejections) + url.PathEscape(node) + "/" + url.PathEscape(typ)
			ops = append(ops, clientv3.OpPut(key, string(v), clientv3.WithLease(lease)))
			if len(ops) >= min(s.opts.MaxTxnOps, statusBatchOps) {
				if err := commit(); err != nil {
					return err
				}
			}
		}
	}
	return commit()
}

// rejectionLease returns the replica's rejection lease, granting it and
// keeping it alive until Close on first use.
func (s *Store) rejectionLease(ctx context.Context, replica string) (clientv3.LeaseID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errors.New("store closed")
	}
	if id, ok := s.rejections[replica]; ok {
		return id, nil
	}
	lease, err := s.cli.Grant(ctx, int64(math.Ceil(RejectionTTL.Seconds())))
	if err != nil {
		return 0, fmt.Errorf("grant the rejection lease of %s: %w", replica, err)
	}
	ch, err := s.cli.KeepAlive(s.ctx, lease.ID)
	if err != nil {
		return 0, fmt.Errorf("keep the rejection lease of %s alive: %w", replica, err)
	}
	s.rejections[replica] = lease.ID
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for range ch {
		}
		s.mu.Lock()
		if s.rejections[replica] == lease.ID {
			delete(s.rejections, replica)
		}
		s.mu.Unlock()
	}()
	return lease.ID, nil
}

// watchPairs lists dir, then follows it, re-listing after a compaction and
// resuming after an outage; each break is reported as an event with Err.
func (s *Store) watchPairs(ctx context.Context, dir string) <-chan PairEvent {
	out := make(chan PairEvent, 16)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	go func() {
		defer close(out)
		defer cancel()
		defer stop()
		s.pairLoop(ctx, dir, out)
	}()
	return out
}

func (s *Store) pairLoop(ctx context.Context, dir string, out chan<- PairEvent) {
	backoff := watchMinBackoff
	var rev int64
	sendPair := func(ev PairEvent) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	wait := func(err error) bool {
		if !sendPair(PairEvent{Err: err}) {
			return false
		}
		t := time.NewTimer(backoff)
		defer t.Stop()
		backoff = min(backoff*2, watchMaxBackoff)
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for ctx.Err() == nil {
		if rev == 0 {
			all := map[string]map[string][]byte{}
			r, err := s.rangeAt(ctx, dir, clientv3.GetPrefixRangeEnd(dir), 0, func(k, v []byte, _, _ int64) {
				if a, b, ok := s.splitPair(dir, k); ok {
					if all[a] == nil {
						all[a] = map[string][]byte{}
					}
					all[a][b] = v
				}
			})
			if err != nil {
				if !wait(err) {
					return
				}
				continue
			}
			if !sendPair(PairEvent{Resync: all}) {
				return
			}
			rev, backoff = r, watchMinBackoff
		}
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, dir, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithCreatedNotify())
		var err error
		for resp := range wch {
			if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
				rev = 0
				break
			}
			if err = resp.Err(); err != nil {
				break
			}
			backoff = watchMinBackoff
			var ev PairEvent
			for _, e := range resp.Events {
				rev = e.Kv.ModRevision
				a, b, ok := s.splitPair(dir, e.Kv.Key)
				if !ok {
					continue
				}
				c := PairChange{First: a, Second: b}
				if e.Type == mvccpb.PUT {
					c.Value = e.Kv.Value
				}
				ev.Changes = append(ev.Changes, c)
			}
			// An event without changes (the watch's creation) says it is live.
			if !sendPair(ev) {
				wcancel()
				return
			}
		}
		wcancel()
		if ctx.Err() != nil {
			return
		}
		if rev == 0 {
			continue // compacted: re-list at once
		}
		if err == nil {
			err = errors.New("watch channel closed")
		}
		if !wait(err) {
			return
		}
	}
}

// splitPair parses <dir><first>/<second>.
func (s *Store) splitPair(dir string, key []byte) (string, string, bool) {
	a, b, ok := strings.Cut(strings.TrimPrefix(string(key), dir), "/")
	first, err1 := url.PathUnescape(a)
	second, err2 := url.PathUnescape(b)
	if !ok || err1 != nil || err2 != nil || first == "" || second == "" {
		s.log.Warn("skipping a malformed key", "key", string(key))
		return "", "", false
	}
	return first, second, true
}
