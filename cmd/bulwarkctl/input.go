package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/bulwarkmesh/bulwark/policies"
)

// stdinName names standard input in messages.
const stdinName = "<stdin>"

// maxInputBytes bounds one input file; policy bundles are far smaller.
const maxInputBytes = 64 << 20

// input is the content of one file, or of standard input.
type input struct {
	name string
	data []byte
}

// policyExtensions are the file names a directory walk picks up.
var policyExtensions = []string{".yaml", ".yml", ".json"}

// readInputs reads PATH as given to -f: a file, a directory (every .yaml,
// .yml and .json file below it, recursively, sorted by path; directories whose
// name starts with a dot, such as .git, are skipped) or "-" for stdin.
func readInputs(path string, stdin io.Reader) ([]input, error) {
	if path == "-" {
		data, err := io.ReadAll(io.LimitReader(stdin, maxInputBytes+1))
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		if len(data) > maxInputBytes {
			return nil, fmt.Errorf("%s: larger than %d MiB", stdinName, maxInputBytes>>20)
		}
		return []input{{name: stdinName, data: data}}, nil
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		in, err := readFile(path)
		if err != nil {
			return nil, err
		}
		return []input{in}, nil
	}
	var out []input
	// WalkDir visits entries in lexical order, so the result is sorted.
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != path && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !hasPolicyExtension(p) {
			return nil
		}
		in, err := readFile(p)
		if err != nil {
			return err
		}
		out = append(out, in)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no .yaml, .yml or .json files", path)
	}
	return out, nil
}

func hasPolicyExtension(p string) bool {
	ext := strings.ToLower(filepath.Ext(p))
	for _, e := range policyExtensions {
		if ext == e {
			return true
		}
	}
	return false
}

func readFile(p string) (input, error) {
	f, err := os.Open(p)
	if err != nil {
		return input{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxInputBytes+1))
	if err != nil {
		return input{}, fmt.Errorf("reading %s: %w", p, err)
	}
	if len(data) > maxInputBytes {
		return input{}, fmt.Errorf("%s: larger than %d MiB", p, maxInputBytes>>20)
	}
	return input{name: p, data: data}, nil
}

// item is a decoded resource and where it came from.
type item struct {
	res   policies.Resource
	file  string
	index int // 0-based document index in the file
}

func (it item) kind() string { return it.res.GetKind() }
func (it item) name() string { return it.res.GetMeta().Name }

// problem is one thing wrong with the input, located by file, document and field.
type problem struct {
	file       string
	index      int // document index; -1 when the problem concerns the whole file
	kind, name string
	field      string
	message    string
	line       int // 1-based line in the file, 0 when unknown
}

// String renders the problem as
// "FILE: document N (KIND NAME): FIELD: MESSAGE (line L)".
func (p problem) String() string {
	var b strings.Builder
	b.WriteString(p.file)
	if p.index >= 0 {
		fmt.Fprintf(&b, ": document %d", p.index)
		if who := strings.TrimSpace(p.kind + " " + p.name); who != "" {
			b.WriteString(" (" + who + ")")
		}
	}
	b.WriteString(": ")
	if p.field != "" {
		b.WriteString(p.field + ": ")
	}
	b.WriteString(p.message)
	if p.line > 0 {
		fmt.Fprintf(&b, " (line %d)", p.line)
	}
	return b.String()
}

func violationProblem(file string, index int, kind, name string, v policies.Violation) problem {
	return problem{file: file, index: index, kind: kind, name: name, field: v.Field, message: v.Message, line: v.Line}
}

// decodeFile decodes every document of one input strictly. Resources that
// decode come back with their document index; every document that does not
// is reported with all its problems. A document that fails strict decoding is
// also validated as far as it decoded, so that one run reports both an
// unknown field and an out-of-range value in the same document.
func decodeFile(in input, opts policies.ValidateOptions) ([]item, []problem) {
	rs, err := policies.DecodeAll(in.data)
	var derrs policies.DecodeErrors
	if err != nil && !errors.As(err, &derrs) {
		return nil, []problem{{file: in.name, index: -1, message: err.Error()}}
	}
	failed := map[int]*policies.DocumentError{}
	for _, de := range derrs {
		failed[de.Index] = de
	}
	// DecodeAll returns the good resources in document order without their
	// indexes: they take, in order, the indexes that did not fail.
	var items []item
	idx := 0
	for _, r := range rs {
		for failed[idx] != nil {
			idx++
		}
		items = append(items, item{res: r, file: in.name, index: idx})
		idx++
	}
	var probs []problem
	for _, de := range derrs {
		for _, v := range de.Violations {
			probs = append(probs, violationProblem(in.name, de.Index, de.Kind, de.Name, v))
		}
		for _, v := range de.ValidatePartial(opts) {
			probs = append(probs, violationProblem(in.name, de.Index, de.Kind, de.Name, v))
		}
	}
	return items, probs
}
