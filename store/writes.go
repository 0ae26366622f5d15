package store

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// The write history: one record per resource write, under
// <prefix>/v1/history/writes/<revision>, the store revision of the write
// zero-padded to 20 digits so that keys sort by revision. The records are
// opaque to the Store (the caller encodes them); AppendWrite keeps the
// newest keep of them. Load and Watch skip them like the experiment history.

const dirWrites = "history/writes"

func (s *Store) writeKey(rev int64) string { return fmt.Sprintf("%s%020d", s.dir(dirWrites), rev) }

// AppendWrite records the write at store revision rev and deletes the
// oldest records beyond the newest keep.
func (s *Store) AppendWrite(ctx context.Context, rev int64, record []byte, keep int) error {
	dir := s.dir(dirWrites)
	end := clientv3.GetPrefixRangeEnd(dir)
	// The record and a count of the records, in one round trip.
	txn, err := s.cli.Txn(ctx).Then(
		clientv3.OpPut(s.writeKey(rev), string(record)),
		clientv3.OpGet(dir, clientv3.WithRange(end), clientv3.WithCountOnly()),
	).Commit()
	if err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	resp := txn.Responses[1].GetResponseRange()
	excess := resp.Count - int64(keep)
	if excess <= 0 {
		return nil
	}
	// The excess oldest keys, then one delete of the range up to the last.
	old, err := s.cli.Get(ctx, dir, clientv3.WithRange(end), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(excess))
	if err != nil || len(old.Kvs) == 0 {
		return err
	}
	last := string(old.Kvs[len(old.Kvs)-1].Key)
	if _, err := s.cli.Delete(ctx, dir, clientv3.WithRange(last+"\x00")); err != nil {
		return fmt.Errorf("write history: trim: %w", err)
	}
	return nil
}

// Writes returns the newest limit records of the write history, newest first.
func (s *Store) Writes(ctx context.Context, limit int) ([][]byte, error) {
	dir := s.dir(dirWrites)
	resp, err := s.cli.Get(ctx, dir, clientv3.WithRange(clientv3.GetPrefixRangeEnd(dir)),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("write history: %w", err)
	}
	out := make([][]byte, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = kv.Value
	}
	return out, nil
}

// RevisionsBefore returns the mod revision that each resource of kind had
// just before store revision rev (0 for one that did not exist then), by
// name: what a write at rev replaced or deleted. It fails when rev-1 has
// been compacted.
func (s *Store) RevisionsBefore(ctx context.Context, rev int64, kind string, names []string) (map[string]int64, error) {
	dir, err := s.kindDir(kind)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(names))
	if len(names) == 1 { // one write: one key, not the whole kind
		resp, err := s.cli.Get(ctx, dir+names[0], clientv3.WithRev(rev-1), clientv3.WithKeysOnly())
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			out[names[0]] = kv.ModRevision
		}
		return out, nil
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	from, end := dir, clientv3.GetPrefixRangeEnd(dir)
	for {
		resp, err := s.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithRev(rev-1),
			clientv3.WithKeysOnly(), clientv3.WithLimit(int64(s.opts.PageSize)))
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			if n := string(kv.Key[len(dir):]); want[n] {
				out[n] = kv.ModRevision
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
