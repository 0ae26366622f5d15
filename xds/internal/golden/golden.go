// Package golden compares test output with golden files and regenerates
// them with `go test ./xds/... -update`, deleting the outputs no case
// produces any more.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Update rewrites the golden files instead of comparing with them.
var Update = flag.Bool("update", false, "regenerate golden files and delete stale ones")

// InputSuffix ends the name of every input file.
const InputSuffix = ".in.yaml"

// Dir is a directory of golden inputs and outputs.
type Dir struct {
	Path     string
	produced map[string]bool
	done     map[string]bool
}

// Open returns the golden directory at path.
func Open(path string) *Dir {
	return &Dir{Path: path, produced: map[string]bool{}, done: map[string]bool{}}
}

// Cases lists the case names: the inputs' names without InputSuffix, sorted.
func (d *Dir) Cases(t *testing.T) []string {
	t.Helper()
	ins, err := filepath.Glob(filepath.Join(d.Path, "*"+InputSuffix))
	require.NoError(t, err)
	require.NotEmpty(t, ins, "no golden inputs in %s", d.Path)
	var out []string
	for _, in := range ins {
		out = append(out, strings.TrimSuffix(filepath.Base(in), InputSuffix))
	}
	sort.Strings(out)
	return out
}

// Input reads a case's input.
func (d *Dir) Input(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.Path, name+InputSuffix))
	require.NoError(t, err)
	return b
}

// Check compares got with the golden file name, or writes it with -update.
func (d *Dir) Check(t *testing.T, name string, got []byte) {
	t.Helper()
	d.produced[name] = true
	path := filepath.Join(d.Path, name)
	if *Update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		t.Fatalf("%s is missing: run go test ./xds/... -update", path)
	}
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "%s differs: review the diff, then run go test ./xds/... -update", path)
}

// Done records that a case produced all its outputs.
func (d *Dir) Done(name string) { d.done[name] = true }

// Stale deletes (with -update) or reports the outputs no case produced. It
// does nothing unless every case is Done (a failed or filtered-out case has
// not produced its outputs).
func (d *Dir) Stale(t *testing.T) {
	t.Helper()
	for _, name := range d.Cases(t) {
		if !d.done[name] {
			return
		}
	}
	all, err := filepath.Glob(filepath.Join(d.Path, "*.yaml"))
	require.NoError(t, err)
	for _, path := range all {
		name := filepath.Base(path)
		if strings.HasSuffix(name, InputSuffix) || d.produced[name] {
			continue
		}
		if *Update {
			require.NoError(t, os.Remove(path))
			continue
		}
		t.Errorf("%s is stale (no case produces it): run go test ./xds/... -update", path)
	}
}
