package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/bulwarkmesh/bulwark/policies"
)

// kindInfo names a resource kind the ways a user may type it.
type kindInfo struct {
	kind   string // Service, ResiliencePolicy, ChaosExperiment
	plural string // the API collection: services, policies, experiments
}

var kinds = []kindInfo{
	{policies.KindService, "services"},
	{policies.KindPolicy, "policies"},
	{policies.KindExperiment, "experiments"},
}

// kindNames lists what parseKind accepts, for messages.
const kindNames = "service(s), policy(ies), experiment(s), or Service, ResiliencePolicy, ChaosExperiment"

// parseKind accepts service, services, svc, policy, policies, experiment,
// experiments and the kind names, in any case.
func parseKind(s string) (kindInfo, bool) {
	switch strings.ToLower(s) {
	case "service", "services", "svc":
		return kinds[0], true
	case "policy", "policies", "resiliencepolicy", "resiliencepolicies":
		return kinds[1], true
	case "experiment", "experiments", "chaosexperiment", "chaosexperiments":
		return kinds[2], true
	}
	return kindInfo{}, false
}

// parseArgs parses flags that may come before, between or after positional
// arguments, and checks the number of positional arguments. It returns an
// exit code and false when the command must stop (after -h, or on a usage
// error).
func (e *env) parseArgs(fs *flag.FlagSet, name string, args []string, minArgs, maxArgs int) ([]string, int, bool) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printCommandUsage(e.stdout, name, fs)
				return nil, exitOK, false
			}
			return nil, e.usageError(fs, name, err.Error()), false
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch {
	case len(pos) < minArgs:
		return nil, e.usageError(fs, name, "missing arguments"), false
	case len(pos) > maxArgs:
		return nil, e.usageError(fs, name, fmt.Sprintf("unexpected argument %q", pos[maxArgs])), false
	}
	return pos, exitOK, true
}

// outputFlag registers -o with its allowed values (the first is the default).
func outputFlag(fs *flag.FlagSet, formats ...string) *string {
	return fs.String("o", formats[0], "output format: "+strings.Join(formats, ", "))
}

func checkOutput(o string, formats ...string) error {
	for _, f := range formats {
		if o == f {
			return nil
		}
	}
	return fmt.Errorf("-o must be %s (got %q)", strings.Join(formats, ", "), o)
}

// writeJSON prints a JSON value indented.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// writeRawJSON re-indents JSON as the server sent it.
func writeRawJSON(w io.Writer, raw []byte) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return err
	}
	return writeJSON(w, v)
}

// resourceYAML renders resources as YAML documents separated by "---", in
// the field order of the resource types.
func resourceYAML(w io.Writer, rs []policies.Resource) error {
	for i, r := range rs {
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(r); err != nil {
			return err
		}
		if err := enc.Close(); err != nil {
			return err
		}
	}
	return nil
}

// decodeStored decodes resources as the API returns them (with status).
func decodeStored(raws []json.RawMessage) ([]policies.Resource, error) {
	out := make([]policies.Resource, 0, len(raws))
	for _, raw := range raws {
		r, err := policies.DecodeStored(raw)
		if err != nil {
			return nil, fmt.Errorf("the server sent a resource bulwarkctl cannot read: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// printWarnings writes the lint findings of a write, one line each.
func printWarnings(w io.Writer, fs []policies.Finding) {
	for _, f := range fs {
		fmt.Fprintln(w, f.String())
	}
}
