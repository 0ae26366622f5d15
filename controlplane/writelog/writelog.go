// Package writelog is the write history (the audit log of writes): a
// decorator of the resource applier that records, after every write that
// changed the store, who made it, what it did to which resources, when, and
// each resource's revision before and after. The records live in etcd,
// bounded to the newest Keep, and are served by GET /v1/history.
//
// It wraps an applier (Put, Delete, Apply), so the admin API and the
// directory sync write through it unchanged. It imports the store's write
// history calls through a small interface, the API types and apply's
// request type; it must not import the admin API, gitops, the xDS server,
// the builder or the root controlplane package.
package writelog

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/policies"
)

// DefaultKeep is how many records the history keeps: at a write a minute,
// most of a day; a directory sync writes only what changed.
const DefaultKeep = 1000

// recordTimeout bounds the recording of one write, which runs after the
// write and so outlives the request's own deadline.
const recordTimeout = 5 * time.Second

// Applier is what the log wraps; *apply.Applier is one.
type Applier interface {
	Put(ctx context.Context, r policies.Resource, expectRev int64, who string) (*api.WriteResult[policies.Resource], error)
	Delete(ctx context.Context, kind, name string, expectRev int64, who string) (*api.WriteResult[policies.Resource], error)
	Apply(ctx context.Context, req apply.Request) (*api.ApplyResult, error)
	ValidateOptions() policies.ValidateOptions
}

// Store keeps the records; *store.Store is one.
type Store interface {
	AppendWrite(ctx context.Context, rev int64, record []byte, keep int) error
	Writes(ctx context.Context, limit int) ([][]byte, error)
	RevisionsBefore(ctx context.Context, rev int64, kind string, names []string) (map[string]int64, error)
}

// Log is an Applier that records every write that changed the store.
type Log struct {
	inner Applier
	store Store
	keep  int
	log   *slog.Logger
	now   func() time.Time
}

// New wraps inner; records go to st, which keeps the newest keep
// (DefaultKeep when keep <= 0).
func New(inner Applier, st Store, keep int, log *slog.Logger) *Log {
	if keep <= 0 {
		keep = DefaultKeep
	}
	if log == nil {
		log = slog.Default()
	}
	return &Log{inner: inner, store: st, keep: keep, log: log.With("component", "writelog"), now: time.Now}
}

// ValidateOptions returns the wrapped applier's validation limits.
func (l *Log) ValidateOptions() policies.ValidateOptions { return l.inner.ValidateOptions() }

// Put writes one resource and records it when it changed.
func (l *Log) Put(ctx context.Context, r policies.Resource, expectRev int64, who string) (*api.WriteResult[policies.Resource], error) {
	res, err := l.inner.Put(ctx, r, expectRev, who)
	if err == nil && changed(res.Action) {
		l.record(ctx, api.WriteRecord{Revision: res.Revision, Who: who, Operation: api.OperationPut, Source: r.GetMeta().Source,
			Items: []api.WriteItem{{Kind: res.Kind, Name: res.Name, Action: res.Action, RevisionAfter: res.Revision}}})
	}
	return res, err
}

// Delete deletes one resource and records it.
func (l *Log) Delete(ctx context.Context, kind, name string, expectRev int64, who string) (*api.WriteResult[policies.Resource], error) {
	res, err := l.inner.Delete(ctx, kind, name, expectRev, who)
	if err == nil && changed(res.Action) {
		l.record(ctx, api.WriteRecord{Revision: res.Revision, Who: who, Operation: api.OperationDelete,
			Items: []api.WriteItem{{Kind: res.Kind, Name: res.Name, Action: res.Action}}})
	}
	return res, err
}

// Apply writes a bundle and records the resources it created, updated or
// deleted; a dry run, or an apply that changed nothing, is not recorded.
func (l *Log) Apply(ctx context.Context, req apply.Request) (*api.ApplyResult, error) {
	res, err := l.inner.Apply(ctx, req)
	if err != nil || res.DryRun {
		return res, err
	}
	rec := api.WriteRecord{Revision: res.Revision, Who: req.Who, Operation: api.OperationApply, Source: req.Source, Prune: req.Prune}
	if rec.Who == "" {
		rec.Who = req.Source
	}
	for _, it := range res.Items {
		if !changed(it.Action) {
			continue
		}
		wi := api.WriteItem{Kind: it.Kind, Name: it.Name, Action: it.Action}
		if it.Action != api.ActionDeleted {
			wi.RevisionAfter = res.Revision
		}
		rec.Items = append(rec.Items, wi)
	}
	if len(rec.Items) > 0 {
		l.record(ctx, rec)
	}
	return res, err
}

func changed(action string) bool {
	return action == api.ActionCreated || action == api.ActionUpdated || action == api.ActionDeleted
}

// record fills in the time and the revisions before, and stores the record.
// The write is done whatever happens here: a record that cannot be stored
// is logged, not returned as the write's error (the caller would retry a
// write that succeeded).
func (l *Log) record(ctx context.Context, rec api.WriteRecord) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	rec.Time = l.now().UTC()
	if err := l.fillBefore(ctx, &rec); err != nil {
		// Without the earlier state (compacted already) the record still
		// says who did what, when.
		l.log.Warn("write history: revisions before the write unknown", "revision", rec.Revision, "err", err)
	}
	data, err := json.Marshal(rec)
	if err == nil {
		err = l.store.AppendWrite(ctx, rec.Revision, data, l.keep)
	}
	if err != nil {
		l.log.Error("write history: the write is done but its record is lost", "revision", rec.Revision, "who", rec.Who, "err", err)
	}
}

// fillBefore reads, at the revision just before the write, the revision of
// every resource the write touched: exactly what it replaced, even when
// other writes raced it.
func (l *Log) fillBefore(ctx context.Context, rec *api.WriteRecord) error {
	names := map[string][]string{}
	for _, it := range rec.Items {
		if it.Action != api.ActionCreated {
			names[it.Kind] = append(names[it.Kind], it.Name)
		}
	}
	for kind, ns := range names {
		before, err := l.store.RevisionsBefore(ctx, rec.Revision, kind, ns)
		if err != nil {
			return err
		}
		for i := range rec.Items {
			if it := &rec.Items[i]; it.Kind == kind {
				it.RevisionBefore = before[it.Name]
			}
		}
	}
	return nil
}

// Writes returns the newest limit records, newest first.
func (l *Log) Writes(ctx context.Context, limit int) (*api.WriteHistory, error) {
	raws, err := l.store.Writes(ctx, min(limit, l.keep))
	if err != nil {
		return nil, err
	}
	out := &api.WriteHistory{Items: make([]api.WriteRecord, 0, len(raws)), Kept: l.keep}
	for _, raw := range raws {
		var rec api.WriteRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return nil, fmt.Errorf("write history: a record does not decode: %w", err)
		}
		out.Items = append(out.Items, rec)
	}
	return out, nil
}
