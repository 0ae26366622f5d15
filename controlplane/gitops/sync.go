// Package gitops keeps the store in step with a directory of policy files
// (a git checkout kept fresh by any git-sync): it applies the directory with
// prune under source "dir:<path>" whenever its content changes, and again
// when the store drifted from it. A directory that does not decode or
// validate changes nothing and is reported.
//
// It writes only through an Applier. It must not import the store, the
// admin API, the xDS server or the root controlplane package.
package gitops

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/policies"
)

// DefaultResync is how often, at most, a directory whose files did not
// change is applied again because the store changed: what the directory
// declares wins over edits made through the API (drift is reverted).
const DefaultResync = 10 * time.Second

// Sync applies a directory of policy files with prune under source
// "dir:<path>" whenever its content changes, and again when the store
// drifted from it. A directory that does not decode or validate changes
// nothing: the last good state stays, and the failure is reported in status,
// the log and a metric.
type Sync struct {
	applier  Applier
	revision func() int64
	metrics  *metrics.Metrics
	dir      string
	source   string
	interval time.Duration
	resync   time.Duration
	log      *slog.Logger

	mu        sync.Mutex
	status    api.SyncStatus
	last      string    // content hash of the last successful apply
	lastRev   int64     // the builder's revision that reflects the last successful apply
	lastApply time.Time // when it happened
	// failing: the last sync failed; failedHash is the content that failed
	// to decode or validate ("" when the apply itself failed, which is
	// tried again).
	failing    bool
	failedHash string
}

// Applier writes a bundle; *apply.Applier is one.
type Applier interface {
	Apply(ctx context.Context, req apply.Request) (*api.ApplyResult, error)
	ValidateOptions() policies.ValidateOptions
}

// Config is what a Sync needs.
type Config struct {
	// Dir is the directory of policy files.
	Dir     string
	Applier Applier
	// Revision returns the store revision the builder has seen; drift is
	// judged on it (the store revision also moves for keys the builder
	// does not follow).
	Revision func() int64
	Metrics  *metrics.Metrics
	Log      *slog.Logger
	// Resync overrides DefaultResync.
	Resync time.Duration
}

// New checks the directory and returns its sync; Run starts it.
func New(c Config) (*Sync, error) {
	dir := c.Dir
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("--sync-dir: %w", err)
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("--sync-dir %s is not a directory", dir)
	}
	s := &Sync{applier: c.Applier, revision: c.Revision, metrics: c.Metrics, dir: abs, source: "dir:" + abs, interval: time.Second, resync: cmp.Or(c.Resync, DefaultResync), log: c.Log}
	s.status = api.SyncStatus{Dir: abs, Source: s.source}
	return s, nil
}

// Run syncs at once, then whenever the directory's content changes.
func (s *Sync) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.syncOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// syncOnce reads the directory and applies it when it changed since the last
// successful apply (or when that apply failed), or when the store changed
// since and the resync period has passed.
func (s *Sync) syncOnce(ctx context.Context) {
	files, hash, err := readPolicyDir(s.dir)
	if err == nil && !s.due(hash) {
		return
	}
	// The revision the builder has seen before this apply: the store
	// revision also moves for keys the builder does not follow (proxy
	// status, experiment history), so drift is judged on the builder's.
	seen := s.revision()
	var res *api.ApplyResult
	contentErr := err != nil
	if err == nil {
		var rs []policies.Resource
		rs, err = decodeFiles(files, s.applier.ValidateOptions())
		contentErr = err != nil
		if err == nil && len(rs) == 0 {
			// An empty checkout (a failed clone, a swap in progress) must not
			// prune everything the directory ever declared.
			contentErr = true
			err = fmt.Errorf("%s holds no resources; refusing to prune everything it applied (delete resources through the API, or keep at least one file)", s.dir)
		}
		if err == nil {
			res, err = s.applier.Apply(ctx, apply.Request{Resources: rs, Source: s.source, Prune: true, Who: s.source, SkipRanExperiments: true})
		}
	}
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.LastSync = time.Now().UTC()
	if err != nil {
		if s.status.Error != err.Error() {
			s.log.Error("directory sync failed; the last good state stays", "dir", s.dir, "err", err)
		}
		s.status.OK, s.status.Error = false, err.Error()
		s.failing, s.failedHash = true, ""
		if contentErr {
			s.failedHash = hash
		}
		s.metrics.SyncFailures.Inc()
		s.metrics.SyncOK.Set(0)
		return
	}
	wrote := 0
	for _, it := range res.Items {
		switch it.Action {
		case api.ActionCreated, api.ActionUpdated, api.ActionDeleted:
			wrote++
		}
	}
	if wrote > 0 {
		seen = res.Revision // the builder reaches it once it sees the write
	}
	contentChanged := hash != s.last
	s.last, s.lastRev, s.lastApply = hash, seen, time.Now()
	s.failing, s.failedHash = false, ""
	s.status.OK, s.status.Error, s.status.Revision, s.status.Items = true, "", res.Revision, res.Items
	s.metrics.SyncOK.Set(1)
	level := slog.LevelInfo
	if wrote == 0 && !contentChanged {
		level = slog.LevelDebug // a drift check that found none
	}
	s.log.Log(ctx, level, "directory synced", "dir", s.dir, "resources", len(res.Items), "changed", wrote, "revision", res.Revision)
}

// due reports whether the directory must be applied: its content changed
// since the last successful apply (and is not content that already failed
// to decode), the last sync failed and the directory is back to the last
// good content (a reverted broken file), or the store moved past that
// apply's revision and the resync period has passed.
func (s *Sync) due(hash string) bool {
	s.mu.Lock()
	last, failing, failed, lastApply, lastRev := s.last, s.failing, s.failedHash, s.lastApply, s.lastRev
	s.mu.Unlock()
	switch {
	case hash != last:
		return hash != failed // new content, unless it is the broken content already reported
	case failing:
		return true // back to the last good content (a revert), or the apply failed: try again
	}
	return time.Since(lastApply) >= s.resync && s.revision() != lastRev
}

// Reset makes the next sync apply the directory whatever it applied
// before: a replica that takes the sync over from another must not trust
// what it applied in an earlier term.
func (s *Sync) Reset() {
	s.mu.Lock()
	s.last, s.lastRev = "", 0
	s.mu.Unlock()
}

// Status returns the sync's state.
func (s *Sync) Status() api.SyncStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Items = append([]api.ApplyItem(nil), s.status.Items...)
	return st
}

// policyFile is one file of a policy directory.
type policyFile struct {
	path string
	data []byte
}

// readPolicyDir reads every *.yaml, *.yml and *.json file under dir, sorted
// by path, following symbolic links (git-sync swaps a link to publish), and
// hashes their names and contents.
func readPolicyDir(dir string) ([]policyFile, string, error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", dir, err)
	}
	var files []policyFile
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir // .git and other hidden directories
			}
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
		default:
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		files = append(files, policyFile{path: rel, data: data})
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", dir, err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f.path, len(f.data))
		h.Write(f.data)
	}
	return files, hex.EncodeToString(h.Sum(nil)), nil
}

// decodeFiles decodes and validates every file. Every problem names its
// file, document and field, and any problem fails the whole directory.
func decodeFiles(files []policyFile, opts policies.ValidateOptions) ([]policies.Resource, error) {
	var (
		out  []policies.Resource
		errs []error
	)
	type where struct {
		file string
		doc  int
	}
	seen := map[string]where{}
	for _, f := range files {
		rs, err := policies.DecodeAll(f.data)
		if err != nil {
			var des policies.DecodeErrors
			if !errors.As(err, &des) {
				errs = append(errs, fmt.Errorf("%s: %w", f.path, err))
				continue
			}
			for _, de := range des {
				errs = append(errs, fmt.Errorf("%s: %w", f.path, de))
			}
			continue
		}
		// Without decode errors, resource i is document i.
		for i, r := range rs {
			kind, name := r.GetKind(), r.GetMeta().Name
			if vs := policies.Validate(r, opts); len(vs) > 0 {
				errs = append(errs, fmt.Errorf("%s: %w", f.path, &policies.DocumentError{Index: i, Kind: kind, Name: name, Violations: vs}))
				continue
			}
			key := resourceKey(kind, name)
			if prev, dup := seen[key]; dup {
				errs = append(errs, fmt.Errorf("%s: %w", f.path, &policies.DocumentError{Index: i, Kind: kind, Name: name, Violations: policies.Violations{{
					Field: "metadata.name", Message: fmt.Sprintf("%s %s is already declared in %s document %d", kind, name, prev.file, prev.doc)}}}))
				continue
			}
			seen[key] = where{f.path, i}
			out = append(out, r)
		}
	}
	return out, errors.Join(errs...)
}

func resourceKey(kind, name string) string { return kind + "/" + name }
