package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bulwarkmesh/bulwark/policies"
)

// Experiment outcomes recorded in status.outcome.
const (
	OutcomeRunning = "running"
	OutcomeExpired = "expired"
	OutcomeStopped = "stopped"
)

// StartExperiment starts a chaos experiment: its key is leased for
// spec.duration, e.Status is filled (startedAt, endsAt, startedBy = who,
// outcome running) and the history record is written in the same
// transaction. It returns the revision of the start, or a *ConflictError
// (errors.Is ErrConflict) when an experiment of that name is running.
func (s *Store) StartExperiment(ctx context.Context, e *policies.ChaosExperiment, who string) (int64, error) {
	if e == nil {
		return 0, errors.New("start experiment: no experiment")
	}
	return s.apply(ctx, []Op{{Put: e, ExpectRev: -1}}, who, true)
}

// StopExperiment stops one running experiment: its key is deleted, its lease
// revoked and its history record marked stopped by who. ErrNotFound when no
// experiment of that name runs.
func (s *Store) StopExperiment(ctx context.Context, name, who string) error {
	_, err := s.apply(ctx, []Op{{DeleteKind: policies.KindExperiment, DeleteName: name}}, who, true)
	return err
}

// StopExperiments is the kill switch: it stops every running experiment
// (including ones whose stored value does not decode) and returns the names
// stopped, sorted. It goes on after a failure and reports every failure.
func (s *Store) StopExperiments(ctx context.Context, who string) ([]string, error) {
	type found struct {
		key   string
		lease int64
	}
	var keys []found
	dir := s.dir(dirExperiments)
	if _, err := s.rangeAt(ctx, dir, clientv3.GetPrefixRangeEnd(dir), 0, func(k, _ []byte, _, lease int64) {
		keys = append(keys, found{string(k), lease})
	}); err != nil {
		return nil, fmt.Errorf("kill switch: list experiments: %w", err)
	}
	var (
		stopped []string
		errs    []error
	)
	for _, f := range keys {
		name := strings.TrimPrefix(f.key, dir)
		if checkSegment("name", name) != nil {
			// Not a key Bulwark writes; remove it all the same.
			if _, err := s.cli.Delete(ctx, f.key); err != nil {
				errs = append(errs, fmt.Errorf("kill switch: delete %s: %w", f.key, writeError(err)))
				continue
			}
			if f.lease != 0 {
				s.revoke(clientv3.LeaseID(f.lease))
			}
			stopped = append(stopped, name)
			continue
		}
		err := s.StopExperiment(ctx, name, who)
		switch {
		case err == nil:
			stopped = append(stopped, name)
		case errors.Is(err, ErrNotFound): // ended meanwhile
		default:
			errs = append(errs, fmt.Errorf("kill switch: %w", err))
		}
	}
	sort.Strings(stopped)
	return stopped, errors.Join(errs...)
}

// History returns every recorded experiment run, newest first. A "running"
// record whose endsAt has passed reads as "expired" (endedAt = endsAt).
// Records that fail to decode are logged and skipped.
func (s *Store) History(ctx context.Context) ([]*policies.ChaosExperiment, error) {
	dir := s.dir(dirHistory)
	var out []*policies.ChaosExperiment
	now := s.now()
	_, err := s.rangeAt(ctx, dir, clientv3.GetPrefixRangeEnd(dir), 0, func(k, v []byte, mod, _ int64) {
		e, err := decodeHistory(strings.TrimPrefix(string(k), dir), v)
		if err != nil {
			s.log.Warn("skipping an experiment record", "error", &ValueError{Key: string(k), Err: err})
			return
		}
		e.Metadata.Revision = mod
		if st := e.Status; st.Outcome == OutcomeRunning {
			if ends, err := time.Parse(time.RFC3339Nano, st.EndsAt); err == nil && !now.Before(ends) {
				st.Outcome, st.EndedAt = OutcomeExpired, st.EndsAt
			}
		}
		out = append(out, e)
	})
	if err != nil {
		return nil, fmt.Errorf("experiment history: %w", err)
	}
	steady, err := s.steadyRecords(ctx)
	if err != nil {
		return nil, fmt.Errorf("experiment history: %w", err)
	}
	for _, e := range out {
		if k, err := s.steadyKey(e.Metadata.Name, e.Status.StartedAt); err == nil {
			attachSteady(e, steady[strings.TrimPrefix(k, s.dir(dirSteady))])
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Status.StartedAt, out[j].Status.StartedAt
		ta, _ := time.Parse(time.RFC3339Nano, a)
		tb, _ := time.Parse(time.RFC3339Nano, b)
		if !ta.Equal(tb) {
			return ta.After(tb)
		}
		return out[i].Metadata.Name < out[j].Metadata.Name
	})
	return out, nil
}

func decodeHistory(rest string, v []byte) (*policies.ChaosExperiment, error) {
	name, _, ok := strings.Cut(rest, "/")
	if !ok {
		return nil, errors.New("malformed key: expected <name>/<start>")
	}
	r, err := policies.DecodeStored(v)
	if err != nil {
		return nil, err
	}
	e, ok := r.(*policies.ChaosExperiment)
	if !ok {
		return nil, fmt.Errorf("kind: %q in the experiment history", r.GetKind())
	}
	if e.Metadata.Name != name {
		return nil, fmt.Errorf("metadata.name: %q recorded under %q", e.Metadata.Name, name)
	}
	if e.Status == nil || e.Status.StartedAt == "" {
		return nil, errors.New("status.startedAt: required in a history record")
	}
	return e, nil
}

// planExperiment adds a start, replacement or stop of an experiment to a plan.
// It reads the running experiment, whose history record the change updates,
// and guards that read with a comparison.
func (s *Store) planExperiment(ctx context.Context, p *plan, op Op, c check, who string) error {
	resp, err := s.cli.Get(ctx, c.key)
	if err != nil {
		return fmt.Errorf("read %s %q: %w", c.kind, c.name, err)
	}
	var (
		curRev   int64
		curLease clientv3.LeaseID
		cur      *policies.ChaosExperiment
	)
	if len(resp.Kvs) > 0 {
		kv := resp.Kvs[0]
		curRev, curLease = kv.ModRevision, clientv3.LeaseID(kv.Lease)
		if r, err := s.decodeResource(kv.Key, kv.Value, kv.ModRevision); err == nil {
			cur = r.(*policies.ChaosExperiment)
		}
	}
	if err := c.verdict(curRev); err != nil {
		return err
	}
	c.seen, c.hasSeen = curRev, true
	p.checks = append(p.checks, c)
	if op.Put == nil && curRev == 0 {
		return nil // nothing runs; an Apply's delete is then a no-op
	}

	now := s.now()
	if cur != nil {
		if rec, ok := s.endedRecord(cur, now, who); ok {
			p.writes = append(p.writes, rec)
		}
	}
	if curLease != 0 {
		p.release = append(p.release, curLease)
	}
	if op.Put == nil {
		p.writes = append(p.writes, txnOp{key: c.key, del: true})
		return nil
	}

	e := op.Put.(*policies.ChaosExperiment) // kindOf made sure
	if e.Spec.Duration == nil || e.Spec.Duration.D() <= 0 {
		return policies.Violations{{Field: "spec.duration", Message: "required and positive: an experiment ends by itself"}}
	}
	d := e.Spec.Duration.D()
	st := &policies.ExperimentStatus{
		StartedAt: now.UTC().Format(time.RFC3339Nano),
		EndsAt:    now.Add(d).UTC().Format(time.RFC3339Nano),
		StartedBy: who,
		Outcome:   OutcomeRunning,
	}
	if st.StartedBy == "" && e.Status != nil {
		st.StartedBy = e.Status.StartedBy
	}
	if st.StartedBy == "" {
		st.StartedBy = e.Metadata.Source
	}
	run := *e
	run.Status = st
	val, err := encodeResource(&run)
	if err != nil {
		return err
	}
	ttl := int64(math.Ceil(d.Seconds()))
	p.writes = append(p.writes,
		txnOp{key: c.key, value: string(val), leaseTTL: ttl},
		txnOp{key: s.historyKey(e.Metadata.Name, now), value: string(val)})
	p.puts = append(p.puts, e)
	p.started = append(p.started, startedRun{e, st})
	return nil
}

// startedRun is an experiment whose status is set once its start commits.
type startedRun struct {
	e  *policies.ChaosExperiment
	st *policies.ExperimentStatus
}

// endedRecord is the history write that closes a run: stopped by who now,
// or expired when its end already passed.
func (s *Store) endedRecord(cur *policies.ChaosExperiment, now time.Time, who string) (txnOp, bool) {
	if cur.Status == nil {
		return txnOp{}, false
	}
	started, err := time.Parse(time.RFC3339Nano, cur.Status.StartedAt)
	if err != nil {
		return txnOp{}, false
	}
	rec := *cur
	st := *cur.Status
	rec.Status = &st
	if ends, err := time.Parse(time.RFC3339Nano, st.EndsAt); err == nil && !now.Before(ends) {
		st.Outcome, st.EndedAt = OutcomeExpired, st.EndsAt
	} else {
		st.Outcome, st.EndedAt, st.StoppedBy = OutcomeStopped, now.UTC().Format(time.RFC3339Nano), who
	}
	val, err := encodeResource(&rec)
	if err != nil {
		return txnOp{}, false
	}
	return txnOp{key: s.historyKey(cur.Metadata.Name, started), value: string(val)}, true
}
