package controlplane

import (
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

	"github.com/bulwarkmesh/bulwark/policies"
)

// SyncStatus is the state of the directory sync, shown in /v1/status.
type SyncStatus struct {
	Dir      string      `json:"dir"`
	Source   string      `json:"source"`
	OK       bool        `json:"ok"`
	Error    string      `json:"error,omitempty"`
	LastSync time.Time   `json:"lastSync,omitzero"`
	Revision int64       `json:"revision,omitempty"`
	Items    []ApplyItem `json:"items,omitempty"`
}

// dirSync applies a directory of policy files with prune under source
// "dir:<path>" whenever its content changes. A directory that does not decode
// or validate changes nothing: the last good state stays, and the failure is
// reported in status, the log and a metric.
type dirSync struct {
	cp       *ControlPlane
	dir      string
	source   string
	interval time.Duration
	log      *slog.Logger

	mu     sync.Mutex
	status SyncStatus
	last   string // content hash of the last successful apply
}

func newDirSync(cp *ControlPlane, dir string) (*dirSync, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("--sync-dir: %w", err)
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("--sync-dir %s is not a directory", dir)
	}
	s := &dirSync{cp: cp, dir: abs, source: "dir:" + abs, interval: time.Second, log: cp.cfg.Logger}
	s.status = SyncStatus{Dir: abs, Source: s.source}
	return s, nil
}

// run syncs at once, then whenever the directory's content changes.
func (s *dirSync) run(ctx context.Context) {
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
// successful apply (or when that apply failed).
func (s *dirSync) syncOnce(ctx context.Context) {
	files, hash, err := readPolicyDir(s.dir)
	if err == nil && hash == s.lastHash() {
		return
	}
	var res *ApplyResult
	if err == nil {
		var rs []policies.Resource
		rs, err = decodeFiles(files)
		if err == nil {
			res, err = s.cp.Apply(ctx, ApplyRequest{Resources: rs, Source: s.source, Prune: true, Who: s.source, SkipRanExperiments: true})
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
		s.cp.metrics.syncFailures.Inc()
		s.cp.metrics.syncOK.Set(0)
		return
	}
	s.last = hash
	s.status.OK, s.status.Error, s.status.Revision, s.status.Items = true, "", res.Revision, res.Items
	s.cp.metrics.syncOK.Set(1)
	changed := 0
	for _, it := range res.Items {
		if it.Action != ActionUnchanged {
			changed++
		}
	}
	s.log.Info("directory synced", "dir", s.dir, "resources", len(res.Items), "changed", changed, "revision", res.Revision)
}

func (s *dirSync) lastHash() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// Status returns the sync's state.
func (s *dirSync) Status() SyncStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Items = append([]ApplyItem(nil), s.status.Items...)
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

// decodeFiles decodes every file; any error names the file and fails all.
func decodeFiles(files []policyFile) ([]policies.Resource, error) {
	var (
		out  []policies.Resource
		errs []error
	)
	for _, f := range files {
		rs, err := policies.DecodeAll(f.data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.path, err))
			continue
		}
		out = append(out, rs...)
	}
	return out, errors.Join(errs...)
}
