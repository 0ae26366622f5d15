package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/bulwarkmesh/bulwark/policies"
)

// runDiff shows, as a unified diff of YAML, how the server's resources
// differ from the files: what an apply of the files would change.
func runDiff(e *env, args []string) int {
	fs := e.newFlagSet("diff")
	path := fs.String("f", "", "a file, a directory (recursive: *.yaml, *.yml, *.json) or - for stdin")
	prune := fs.Bool("prune", false, "also show, as deletions, what --source applied and the files no longer declare")
	source := fs.String("source", "", "with --prune: the source whose resources the files own")
	exitCode := fs.Bool("exit-code", false, "exit 1 when there are differences (like git diff --exit-code)")
	if _, code, ok := e.parseArgs(fs, "diff", args, 0, 0); !ok {
		return code
	}
	switch {
	case *path == "":
		return e.usageError(fs, "diff", "-f is required")
	case *prune && *source == "":
		return e.usageError(fs, "diff", "--prune needs --source")
	}
	c, err := e.newClient()
	if err != nil {
		return e.usageError(fs, "diff", err.Error())
	}
	b, code, ok := e.readBundle("diff", *path)
	if !ok {
		return code
	}
	stored := map[string]policies.Resource{}
	var order []string // stored keys in kind, name order
	for _, k := range kinds {
		var list listAnswer
		if err := c.call("GET", "/v1/"+k.plural, "", nil, &list); err != nil {
			return e.fail("diff", err)
		}
		rs, err := decodeStored(list.Items)
		if err != nil {
			return e.fail("diff", err)
		}
		for _, r := range rs {
			key := r.GetKind() + "/" + r.GetMeta().Name
			stored[key] = r
			order = append(order, key)
		}
	}
	var out bytes.Buffer
	declared := map[string]bool{}
	for _, it := range b.items {
		key := it.kind() + "/" + it.name()
		declared[key] = true
		var before, after []byte
		if old, ok := stored[key]; ok {
			if before, err = comparable(old); err != nil {
				return e.fail("diff", err)
			}
		}
		if after, err = comparable(it.res); err != nil {
			return e.fail("diff", err)
		}
		aName, bName := "server/"+key, "files/"+key
		if before == nil {
			aName = "/dev/null"
		}
		out.WriteString(unifiedDiff(aName, bName, string(before), string(after)))
	}
	if *prune {
		for _, key := range order {
			old := stored[key]
			if declared[key] || old.GetMeta().Source != *source {
				continue
			}
			before, err := comparable(old)
			if err != nil {
				return e.fail("diff", err)
			}
			out.WriteString(unifiedDiff("server/"+key, "/dev/null", string(before), ""))
		}
	}
	if _, err := e.stdout.Write(out.Bytes()); err != nil {
		return e.fail("diff", err)
	}
	if out.Len() == 0 {
		fmt.Fprintln(e.stderr, "no differences")
	} else if *exitCode {
		return exitFailed
	}
	return exitOK
}

// comparable renders what a user declares of a resource as YAML: without
// the server's bookkeeping (revision, source, an experiment's status).
func comparable(r policies.Resource) ([]byte, error) {
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	c, err := policies.DecodeStored(raw) // a copy
	if err != nil {
		return nil, err
	}
	c.GetMeta().Revision, c.GetMeta().Source = 0, ""
	if x, ok := c.(*policies.ChaosExperiment); ok {
		x.Status = nil
	}
	var buf bytes.Buffer
	if err := resourceYAML(&buf, []policies.Resource{c}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
