package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bulwarkmesh/bulwark/policies"
)

// dirSteady holds the steady-state runner's record of each run, next to
// the history record it completes. It sorts after status/, so the watch of
// resources never sees it: a reading every interval triggers no rebuild.
const dirSteady = "steadystate"

// maxSteadyRecord bounds one stored record (readings are summarised, so a
// real one is a few KB).
const maxSteadyRecord = 256 << 10

func (s *Store) steadyKey(name, startedAt string) (string, error) {
	if err := checkSegment("name", name); err != nil {
		return "", err
	}
	started, err := time.Parse(time.RFC3339Nano, startedAt)
	if err != nil {
		return "", fmt.Errorf("experiment %q: status.startedAt %q: %w", name, startedAt, err)
	}
	return s.dir(dirSteady) + name + "/" + started.UTC().Format(historyTimeFormat), nil
}

// PutSteadyState records the steady-state status of the run of experiment
// name that started at startedAt (its status.startedAt).
func (s *Store) PutSteadyState(ctx context.Context, name, startedAt string, st *policies.SteadyStateStatus) error {
	key, err := s.steadyKey(name, startedAt)
	if err != nil {
		return err
	}
	val, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if len(val) > maxSteadyRecord {
		return fmt.Errorf("steady-state record of %q: %d bytes, more than %d", name, len(val), maxSteadyRecord)
	}
	if _, err := s.cli.Put(ctx, key, string(val)); err != nil {
		return fmt.Errorf("record steady state of %q: %w", name, err)
	}
	return nil
}

// SteadyState returns the steady-state record of a run, or nil when there
// is none.
func (s *Store) SteadyState(ctx context.Context, name, startedAt string) (*policies.SteadyStateStatus, error) {
	key, err := s.steadyKey(name, startedAt)
	if err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read steady state of %q: %w", name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return decodeSteady(resp.Kvs[0].Value)
}

func decodeSteady(v []byte) (*policies.SteadyStateStatus, error) {
	var st policies.SteadyStateStatus
	dec := json.NewDecoder(strings.NewReader(string(v)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// steadyRecords reads every steady-state record, by "<name>/<start>".
func (s *Store) steadyRecords(ctx context.Context) (map[string]*policies.SteadyStateStatus, error) {
	dir := s.dir(dirSteady)
	out := map[string]*policies.SteadyStateStatus{}
	_, err := s.rangeAt(ctx, dir, clientv3.GetPrefixRangeEnd(dir), 0, func(k, v []byte, _, _ int64) {
		st, err := decodeSteady(v)
		if err != nil {
			s.log.Warn("skipping a steady-state record", "error", &ValueError{Key: string(k), Err: err})
			return
		}
		out[strings.TrimPrefix(string(k), dir)] = st
	})
	return out, err
}

// attachSteady copies a run's steady-state record into its status.
func attachSteady(e *policies.ChaosExperiment, st *policies.SteadyStateStatus) {
	if e.Status != nil && st != nil {
		e.Status.SteadyStateStatus = *st
	}
}
