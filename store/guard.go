package store

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// dirGuards holds the guard keys: empty values whose mod revision says when
// a write that could change the outcome of a check last committed.
const dirGuards = "guards"

// GuardBundle is the guard every bundle apply touches; single writes compare it.
const GuardBundle = "bundle"

// Guard makes the checks a caller ran on what it read at revision Read
// (conflicts between policies, "unchanged" answers, the source kept from the
// stored resource) hold for the write that follows, in the same
// transaction:
//
//   - every key the write changes must not have changed after Read;
//   - single writes (Bundle false) name the guards of what their check looked
//     at (Names); each must not have changed after Read, and is touched by
//     the write, as is nothing else; they also compare GuardBundle;
//   - bundles (Bundle true) compare every resource and every guard at once
//     (two range comparisons) and touch GuardBundle.
//
// Two writes whose checks overlap therefore touch a common guard, and the
// later one's comparison fails. When a comparison of the guard fails while
// the caller's own expectations (Op.ExpectRev) hold, the write returns a
// *StaleError: the caller re-reads (at least up to its Revision), checks
// again and retries. A failed Op.ExpectRev is a *ConflictError as without a
// guard.
type Guard struct {
	Read   int64
	Names  []string
	Bundle bool
}

// ErrStale: a guarded write lost a race with another write; nothing was
// written. The error is a *StaleError.
var ErrStale = errors.New("the store changed while the write was checked")

// StaleError is a guarded write that lost a race: Revision is the newest
// mod revision among the keys its guard compared; a re-read at or after it
// sees the winner.
type StaleError struct {
	Revision int64
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("%v (store revision %d); check again and retry", ErrStale, e.Revision)
}

// Unwrap makes errors.Is(err, ErrStale) true.
func (e *StaleError) Unwrap() error { return ErrStale }

// ApplyGuarded is ApplyAs with a Guard (see Guard). It does not retry by
// itself: the caller's checks must run again on what the winner wrote.
func (s *Store) ApplyGuarded(ctx context.Context, ops []Op, who string, g Guard) (int64, error) {
	if len(ops) == 0 {
		return s.apply(ctx, ops, who, false)
	}
	if len(ops) > s.opts.MaxTxnOps {
		return 0, s.tooLarge(len(ops), len(ops))
	}
	p, err := s.plan(ctx, ops, who, false)
	if err != nil {
		return 0, err
	}
	if err := s.guardPlan(p, g); err != nil {
		return 0, err
	}
	cmps := len(p.guards)
	for _, c := range p.checks {
		if _, ok := c.cmp(); ok {
			cmps++
		}
	}
	if len(p.writes) > s.opts.MaxTxnOps || cmps > s.opts.MaxTxnOps {
		return 0, s.tooLarge(len(ops), max(len(p.writes), cmps))
	}
	rev, retry, err := s.commit(ctx, p)
	if err != nil {
		return 0, err
	}
	if retry {
		return 0, &StaleError{Revision: p.failedAt}
	}
	return rev, nil
}

// guardPlan adds a Guard's comparisons and writes to a plan.
func (s *Store) guardPlan(p *plan, g Guard) error {
	after := g.Read + 1
	if g.Bundle {
		// [policies/, status/) holds the policies and the services.
		newest := []clientv3.OpOption{clientv3.WithKeysOnly(), clientv3.WithLimit(1),
			clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend)}
		p.guards = append(p.guards,
			clientv3.Compare(clientv3.ModRevision(s.dir(dirPolicies)), "<", after).WithRange(s.dir(dirStatus)),
			clientv3.Compare(clientv3.ModRevision(s.dir(dirGuards)), "<", after).WithPrefix())
		p.guardReads = append(p.guardReads,
			clientv3.OpGet(s.dir(dirPolicies), append(newest, clientv3.WithRange(s.dir(dirStatus)))...),
			clientv3.OpGet(s.dir(dirGuards), append(newest, clientv3.WithPrefix())...))
		p.writes = append(p.writes, txnOp{key: s.guardKey(GuardBundle)})
		return nil
	}
	compare := func(k string) {
		p.guards = append(p.guards, clientv3.Compare(clientv3.ModRevision(k), "<", after))
		p.guardReads = append(p.guardReads, clientv3.OpGet(k, clientv3.WithKeysOnly()))
	}
	for _, c := range p.checks {
		compare(c.key)
	}
	compare(s.guardKey(GuardBundle))
	seen := map[string]bool{GuardBundle: true}
	for _, n := range g.Names {
		if seen[n] {
			continue
		}
		seen[n] = true
		if n == "" {
			return errors.New("guard: empty guard name")
		}
		k := s.guardKey(n)
		compare(k)
		p.writes = append(p.writes, txnOp{key: k})
	}
	return nil
}

func (s *Store) guardKey(name string) string { return s.dir(dirGuards) + name }

// Revision returns the store's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, s.opts.Prefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}
