package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/bulwarkmesh/bulwark/policies"
)

// bundle is every resource read from the inputs of one -f PATH, in file order.
type bundle struct {
	files []string
	items []item
}

// set returns the bundle's resources as a policies.Set.
func (b *bundle) set() *policies.Set {
	s := policies.NewSet()
	for _, it := range b.items {
		s.Add(it.res)
	}
	return s
}

// summary counts the bundle's resources by kind, for messages.
func (b *bundle) summary() string {
	counts := map[string]int{}
	for _, it := range b.items {
		counts[it.kind()]++
	}
	return fmt.Sprintf("%s, %s, %s in %s",
		plural(counts[policies.KindService], "service", "services"),
		plural(counts[policies.KindPolicy], "policy", "policies"),
		plural(counts[policies.KindExperiment], "experiment", "experiments"),
		plural(len(b.files), "file", "files"))
}

// plural renders a count with the right form of its noun: "1 file", "2 files".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// guardrailFlags registers the server guardrails that validation checks
// experiments against, with the server's defaults.
func guardrailFlags(fs *flag.FlagSet) *policies.ValidateOptions {
	o := &policies.ValidateOptions{}
	fs.DurationVar(&o.MaxExperimentDuration, "max-experiment-duration", policies.DefaultMaxExperimentDuration, "the server's cap on a chaos experiment's duration")
	fs.Float64Var(&o.MaxFaultPercent, "max-fault-percent", policies.DefaultMaxFaultPercent, "the server's blast-radius cap on abort and delay percentages")
	return o
}

// check reads PATH, decodes every document strictly, validates every
// resource and then the bundle as a whole (names defined twice, conflicting
// policies). It returns every problem at once; err is an I/O error only.
func check(path string, stdin io.Reader, opts policies.ValidateOptions) (*bundle, []problem, error) {
	ins, err := readInputs(path, stdin)
	if err != nil {
		return nil, nil, err
	}
	b := &bundle{}
	var probs []problem
	for _, in := range ins {
		b.files = append(b.files, in.name)
		items, dprobs := decodeFile(in, opts)
		probs = append(probs, dprobs...)
		for _, it := range items {
			for _, v := range policies.Validate(it.res, opts) {
				probs = append(probs, violationProblem(it.file, it.index, it.kind(), it.name(), v))
			}
		}
		b.items = append(b.items, items...)
	}
	probs = append(probs, duplicates(b.items)...)
	if len(probs) == 0 && len(b.items) == 0 {
		// Empty input is a mistake (a pipe that produced nothing, a wrong
		// path), not a valid bundle: CI must not pass on it.
		name := path
		if path == "-" {
			name = stdinName
		}
		probs = append(probs, problem{file: name, index: -1, message: "no resources: the input is empty or holds only comments and empty documents"})
	}
	if len(probs) == 0 {
		// Conflicts are only meaningful between valid, uniquely named policies.
		probs = append(probs, conflicts(b)...)
	}
	sortProblems(probs, b.files)
	return b, probs, nil
}

// duplicates reports every resource whose kind and name an earlier document
// of the bundle already defines: applied together, one would silently
// replace the other.
func duplicates(items []item) []problem {
	first := map[string]item{}
	var out []problem
	for _, it := range items {
		key := it.kind() + "/" + it.name()
		prev, seen := first[key]
		if !seen {
			first[key] = it
			continue
		}
		out = append(out, problem{file: it.file, index: it.index, kind: it.kind(), name: it.name(), field: "metadata.name",
			message: fmt.Sprintf("%s %q is already defined in %s document %d", it.kind(), it.name(), prev.file, prev.index)})
	}
	return out
}

// conflicts reports policies of equal specificity that set the same field
// for the same calls. The control plane refuses a write that creates such a
// conflict, so validation refuses it too; the problem is reported on each
// losing policy, naming the winner.
func conflicts(b *bundle) []problem {
	where := map[string]item{}
	for _, it := range b.items {
		if it.kind() == policies.KindPolicy {
			where[it.name()] = it
		}
	}
	var out []problem
	seen := map[string]bool{}
	for _, c := range b.set().Conflicts() {
		for _, name := range c.Policies {
			if name == c.Winner {
				continue
			}
			key := name + "|" + c.Field + "|" + c.Winner
			if seen[key] {
				continue
			}
			seen[key] = true
			it := where[name]
			out = append(out, problem{file: it.file, index: it.index, kind: policies.KindPolicy, name: name, field: "spec." + c.Field,
				message: fmt.Sprintf("conflicts with policy %q: both target %s with equal specificity and set this field; give one a more specific target or drop the field from one", c.Winner, conflictScope(c))})
		}
	}
	return out
}

func conflictScope(c policies.Conflict) string {
	s := "service " + c.Service
	if c.Route != "" {
		s += " route " + c.Route
	}
	if c.Source != "" {
		s += " from " + c.Source
	}
	return s
}

// sortProblems orders problems by file (in reading order), then document,
// keeping the order they were found in within a document.
func sortProblems(ps []problem, files []string) {
	order := map[string]int{}
	for i, f := range files {
		order[f] = i
	}
	sort.SliceStable(ps, func(i, j int) bool {
		if order[ps[i].file] != order[ps[j].file] {
			return order[ps[i].file] < order[ps[j].file]
		}
		return ps[i].index < ps[j].index
	})
}

// reportProblems writes one problem per line and a count.
func reportProblems(w io.Writer, ps []problem) {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.String() + "\n")
	}
	fmt.Fprintf(&b, "%s found\n", plural(len(ps), "problem", "problems"))
	io.WriteString(w, b.String())
}
