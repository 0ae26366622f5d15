package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bulwarkmesh/bulwark/policies"
)

// rangeAt reads the keys in [from, end) page by page, all at revision rev
// (the current one when rev is 0), and returns the revision read.
func (s *Store) rangeAt(ctx context.Context, from, end string, rev int64, fn func(key, value []byte, mod, lease int64)) (int64, error) {
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(int64(s.opts.PageSize))}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return 0, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			fn(kv.Key, kv.Value, kv.ModRevision, kv.Lease)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Load reads every service, policy, running experiment and registered
// endpoint at one store revision, which it returns. Values that fail to
// decode are skipped and returned as problems (each a *ValueError).
func (s *Store) Load(ctx context.Context) (*policies.Set, int64, []error, error) {
	set, _, rev, problems, err := s.LoadContent(ctx)
	return set, rev, problems, err
}

// LoadContent is Load that also returns the revision of the content: the
// newest mod revision among the keys read. The store revision moves for keys
// that are not content (every replica's proxy status, the experiment
// history), so two replicas that read the same content at different times
// get different store revisions but the same content revision. A deletion
// leaves no key behind: Watch(ctx, content) replays the deletions made since
// the newest key, which raises the content revision to the last of them (as
// a replica that watched them live has it).
func (s *Store) LoadContent(ctx context.Context) (set *policies.Set, content, read int64, problems []error, err error) {
	for attempt := 0; ; attempt++ {
		set, content, read, problems, err = s.loadOnce(ctx)
		// A compaction between two pages invalidates the revision: start over.
		if errors.Is(err, rpctypes.ErrCompacted) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, 0, 0, nil, fmt.Errorf("load: %w", err)
		}
		return set, content, read, problems, nil
	}
}

func (s *Store) loadOnce(ctx context.Context) (*policies.Set, int64, int64, []error, error) {
	set := policies.NewSet()
	var problems []error
	var content int64
	add := func(key, value []byte, mod, _ int64) {
		content = max(content, mod)
		if err := s.addTo(set, key, value, mod); err != nil {
			problems = append(problems, err)
		}
	}
	v1 := s.opts.Prefix + "/v1/"
	// Keys sort as endpoints/, experiments/, history/, policies/, services/,
	// status/: two ranges at one revision skip the history and the status.
	rev, err := s.rangeAt(ctx, s.dir(dirEndpoints), v1+"history/", 0, add)
	if err != nil {
		return nil, 0, 0, nil, err
	}
	if _, err := s.rangeAt(ctx, s.dir(dirPolicies), s.dir(dirStatus), rev, add); err != nil {
		return nil, 0, 0, nil, err
	}
	for _, p := range problems {
		s.log.Warn("skipping a stored value", "error", p)
	}
	return set, content, rev, problems, nil
}

// addTo decodes one stored key into the set.
func (s *Store) addTo(set *policies.Set, key, value []byte, mod int64) error {
	ref, ok := s.parseKey(string(key))
	if !ok {
		if s.inResourceDir(string(key)) {
			return &ValueError{Key: string(key), Err: errors.New("malformed key: expected <kind>/<name> or endpoints/<service>/<instance>")}
		}
		return nil
	}
	if ref.kind == KindEndpoint {
		ep, err := decodeEndpoint(string(key), ref, value)
		if err != nil {
			return err
		}
		set.Register(ref.service, ref.instance, ep)
		return nil
	}
	r, err := s.decodeResource(key, value, mod)
	if err != nil {
		return err
	}
	set.Add(r)
	return nil
}

func (s *Store) inResourceDir(key string) bool {
	for _, d := range []string{dirServices, dirPolicies, dirExperiments, dirEndpoints} {
		if strings.HasPrefix(key, s.dir(d)) {
			return true
		}
	}
	return false
}
