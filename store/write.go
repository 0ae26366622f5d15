package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bulwarkmesh/bulwark/policies"
)

// Op is one change of an Apply: a put of Put, or (when Put is nil) the
// deletion of DeleteKind/DeleteName.
type Op struct {
	Put                    policies.Resource
	DeleteKind, DeleteName string
	// ExpectRev > 0 makes the change a compare-and-swap on the mod revision;
	// -1 requires that the resource does not exist (create; puts only);
	// 0 is unconditional.
	ExpectRev int64
}

// Put writes one resource and returns the revision of the write, which it
// also sets as r's metadata.revision. expectRev > 0: compare-and-swap on the
// mod revision; -1: the resource must not exist; 0: unconditional. A failed
// comparison returns a *ConflictError (errors.Is ErrConflict). Writing a
// ChaosExperiment starts it (see the package documentation).
func (s *Store) Put(ctx context.Context, r policies.Resource, expectRev int64) (int64, error) {
	return s.apply(ctx, []Op{{Put: r, ExpectRev: expectRev}}, "", true)
}

// Delete removes one resource and returns the revision of the deletion.
// expectRev > 0 is a compare-and-swap; 0 is unconditional. A resource that
// does not exist gives ErrNotFound. Deleting a ChaosExperiment stops it.
func (s *Store) Delete(ctx context.Context, kind, name string, expectRev int64) (int64, error) {
	return s.apply(ctx, []Op{{DeleteKind: kind, DeleteName: name, ExpectRev: expectRev}}, "", true)
}

// Apply performs every op in one etcd transaction: all or nothing. It returns
// the transaction's revision and sets it as the metadata.revision of every
// resource put. More ops than MaxTxnOps give ErrTooLarge and write nothing;
// a failed comparison gives a *ConflictError and writes nothing. Deleting a
// resource that does not exist is not an error in an Apply (unless ExpectRev
// asks for a revision).
func (s *Store) Apply(ctx context.Context, ops []Op) (int64, error) {
	return s.apply(ctx, ops, "", false)
}

// ApplyAs is Apply with who recorded on the experiments it starts or stops
// (status.startedBy, and status.stoppedBy in the history).
func (s *Store) ApplyAs(ctx context.Context, ops []Op, who string) (int64, error) {
	return s.apply(ctx, ops, who, false)
}

// check is one comparison of a transaction.
type check struct {
	kind, name, key string
	// expect is the caller's ExpectRev.
	expect int64
	// mustExist: the key must exist (single deletes).
	mustExist bool
	// seen, when hasSeen, is the mod revision read while planning (0: absent);
	// it guards reads the plan depends on and subsumes expect.
	seen    int64
	hasSeen bool
}

func (c check) cmp() (clientv3.Cmp, bool) {
	switch {
	case c.hasSeen:
		return clientv3.Compare(clientv3.ModRevision(c.key), "=", c.seen), true
	case c.expect > 0:
		return clientv3.Compare(clientv3.ModRevision(c.key), "=", c.expect), true
	case c.expect < 0:
		return clientv3.Compare(clientv3.CreateRevision(c.key), "=", 0), true
	case c.mustExist:
		return clientv3.Compare(clientv3.ModRevision(c.key), ">", 0), true
	}
	return clientv3.Cmp{}, false
}

// verdict judges a check against the key's actual mod revision: nil when the
// caller's expectation holds, ErrNotFound or a *ConflictError when it does not.
func (c check) verdict(actual int64) error {
	switch {
	case c.expect > 0 && actual == 0 && c.mustExist:
		return fmt.Errorf("%s %q: %w", c.kind, c.name, ErrNotFound)
	case c.expect > 0 && actual != c.expect, c.expect < 0 && actual != 0:
		return &ConflictError{Kind: c.kind, Name: c.name, Expected: c.expect, Actual: actual}
	case c.mustExist && actual == 0:
		return fmt.Errorf("%s %q: %w", c.kind, c.name, ErrNotFound)
	}
	return nil
}

// txnOp is a write of a plan; leaseTTL > 0 asks for a new lease.
type txnOp struct {
	key, value string
	del        bool
	leaseTTL   int64
}

// plan is a transaction being prepared.
type plan struct {
	checks  []check
	writes  []txnOp
	puts    []policies.Resource
	release []clientv3.LeaseID // leases of replaced or stopped experiment runs
	started []startedRun
	// guards are the comparisons of a Guard (see ApplyGuarded), and
	// guardReads the reads that tell, when one fails, the newest revision
	// among the keys it compares.
	guards     []clientv3.Cmp
	guardReads []clientv3.Op
	// failedAt is, after a failed transaction, the newest mod revision of
	// the keys its guards compare.
	failedAt int64
}

// apply runs ops as one transaction, re-planning when a key the plan read
// changed underneath it. single selects the semantics of Put and Delete.
func (s *Store) apply(ctx context.Context, ops []Op, who string, single bool) (int64, error) {
	if len(ops) == 0 {
		resp, err := s.cli.Get(ctx, s.opts.Prefix, clientv3.WithCountOnly())
		if err != nil {
			return 0, err
		}
		return resp.Header.Revision, nil
	}
	if len(ops) > s.opts.MaxTxnOps {
		return 0, s.tooLarge(len(ops), len(ops))
	}
	for attempt := 0; ; attempt++ {
		p, err := s.plan(ctx, ops, who, single)
		if err != nil {
			return 0, err
		}
		if len(p.writes) > s.opts.MaxTxnOps {
			return 0, s.tooLarge(len(ops), len(p.writes))
		}
		rev, retry, err := s.commit(ctx, p)
		if err != nil || !retry {
			return rev, err
		}
		if attempt == 4 {
			return 0, fmt.Errorf("apply: keys kept changing during the transaction; try again: %w", ErrConflict)
		}
	}
}

func (s *Store) tooLarge(ops, writes int) error {
	return fmt.Errorf("%d changes need %d etcd operations, more than the %d allowed in one transaction (etcd --max-txn-ops); split the apply or raise the limit: %w",
		ops, writes, s.opts.MaxTxnOps, ErrTooLarge)
}

// plan validates ops, reads what experiment changes depend on, and prepares
// the comparisons and writes.
func (s *Store) plan(ctx context.Context, ops []Op, who string, single bool) (*plan, error) {
	p := &plan{}
	keys := map[string]int{}
	for i, op := range ops {
		if err := s.planOp(ctx, p, keys, i, op, who, single); err != nil {
			if single {
				return nil, err
			}
			return nil, fmt.Errorf("op %d: %w", i, err)
		}
	}
	return p, nil
}

// planOp adds one op to a plan; keys maps the keys already changed to their op.
func (s *Store) planOp(ctx context.Context, p *plan, keys map[string]int, i int, op Op, who string, single bool) error {
	kind, name := op.DeleteKind, op.DeleteName
	if op.Put != nil {
		if op.DeleteKind != "" || op.DeleteName != "" {
			return errors.New("either a put or a delete, not both")
		}
		kind, name = op.Put.GetKind(), op.Put.GetMeta().Name
		if k := kindOf(op.Put); k != "" {
			kind = k
		}
	} else if op.ExpectRev < 0 {
		return fmt.Errorf("delete %s %q: ExpectRev -1 (must not exist) only applies to puts", kind, name)
	}
	key, err := s.resourceKey(kind, name)
	if err != nil {
		return err
	}
	if j, dup := keys[key]; dup {
		return fmt.Errorf("%s %q already changed by op %d; one change per resource", kind, name, j)
	}
	keys[key] = i
	c := check{kind: kind, name: name, key: key, expect: op.ExpectRev, mustExist: single && op.Put == nil}
	if kind == policies.KindExperiment {
		return s.planExperiment(ctx, p, op, c, who)
	}
	p.checks = append(p.checks, c)
	if op.Put == nil {
		p.writes = append(p.writes, txnOp{key: key, del: true})
		return nil
	}
	val, err := encodeResource(op.Put)
	if err != nil {
		return err
	}
	p.writes = append(p.writes, txnOp{key: key, value: string(val)})
	p.puts = append(p.puts, op.Put)
	return nil
}

func kindOf(r policies.Resource) string {
	switch r.(type) {
	case *policies.Service:
		return policies.KindService
	case *policies.ResiliencePolicy:
		return policies.KindPolicy
	case *policies.ChaosExperiment:
		return policies.KindExperiment
	}
	return ""
}

// commit grants the leases the plan needs and runs its transaction. retry
// reports that only a key read while planning changed.
func (s *Store) commit(ctx context.Context, p *plan) (rev int64, retry bool, err error) {
	var granted []clientv3.LeaseID
	revokeGranted := func() {
		for _, id := range granted {
			s.revoke(id)
		}
	}
	var cmps []clientv3.Cmp
	var reads []clientv3.Op
	for _, c := range p.checks {
		if cmp, ok := c.cmp(); ok {
			cmps = append(cmps, cmp)
			reads = append(reads, clientv3.OpGet(c.key, clientv3.WithKeysOnly()))
		}
	}
	cmps = append(cmps, p.guards...)
	reads = append(reads, p.guardReads...)
	writes := make([]clientv3.Op, 0, len(p.writes))
	for _, w := range p.writes {
		switch {
		case w.del:
			writes = append(writes, clientv3.OpDelete(w.key))
		case w.leaseTTL > 0:
			lease, err := s.cli.Grant(ctx, w.leaseTTL)
			if err != nil {
				revokeGranted()
				return 0, false, fmt.Errorf("grant a lease for %s: %w", w.key, err)
			}
			granted = append(granted, lease.ID)
			writes = append(writes, clientv3.OpPut(w.key, w.value, clientv3.WithLease(lease.ID)))
		default:
			writes = append(writes, clientv3.OpPut(w.key, w.value))
		}
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(writes...).Else(reads...).Commit()
	if err != nil {
		revokeGranted()
		return 0, false, s.txnError(err)
	}
	if !resp.Succeeded {
		revokeGranted()
		for _, r := range resp.Responses[len(reads)-len(p.guardReads):] {
			if rr := r.GetResponseRange(); rr != nil {
				for _, kv := range rr.Kvs {
					p.failedAt = max(p.failedAt, kv.ModRevision)
				}
			}
		}
		var errs []error
		j := 0 // reads exist only for checks with a comparison, in order
		for _, c := range p.checks {
			if _, ok := c.cmp(); !ok {
				continue
			}
			var actual int64
			if rr := resp.Responses[j].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
				actual = rr.Kvs[0].ModRevision
			}
			j++
			if err := c.verdict(actual); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			return 0, false, errors.Join(errs...)
		}
		return 0, true, nil
	}
	rev = resp.Header.Revision
	for _, r := range p.puts {
		r.GetMeta().Revision = rev
	}
	for _, run := range p.started {
		run.e.Status = run.st
	}
	for _, id := range p.release {
		s.revoke(id)
	}
	return rev, false, nil
}

// revoke ends a lease the Store no longer needs; failures only cost the
// lease's remaining TTL, so they are logged.
func (s *Store) revoke(id clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
	defer cancel()
	if _, err := s.cli.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		s.log.Warn("could not revoke a lease; it will expire by itself", "lease", fmt.Sprintf("%x", int64(id)), "error", err)
	}
}

// txnError names transactions etcd refuses for their size.
func (s *Store) txnError(err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrTooManyOps):
		return fmt.Errorf("etcd refused the transaction: more operations than its --max-txn-ops (the store assumes %d; set it to the server's value): %w", s.opts.MaxTxnOps, ErrTooLarge)
	case errors.Is(err, rpctypes.ErrRequestTooLarge), status.Code(err) == codes.ResourceExhausted:
		return fmt.Errorf("etcd refused the transaction for its size (%v); split the apply or raise etcd's --max-request-bytes: %w", err, ErrTooLarge)
	}
	return fmt.Errorf("etcd transaction: %w", writeError(err))
}
