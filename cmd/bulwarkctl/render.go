package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/bulwarkmesh/bulwark/xds"
	"github.com/bulwarkmesh/bulwark/xds/ir"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// runRender prints the xDS resources that proxies of one service (the
// caller, node.cluster) of one flavor would receive for a set of policy files.
func runRender(e *env, args []string) int {
	fs := e.newFlagSet("render")
	path := fs.String("f", "", "a file, a directory (recursive: *.yaml, *.yml, *.json) or - for stdin")
	service := fs.String("service", "", "the calling service: the proxies' node.cluster")
	flavor := fs.String("flavor", string(ir.FlavorEnvoy), "the data plane: envoy (sidecar) or grpc (proxyless gRPC)")
	output := fs.String("o", "yaml", "output format: yaml or json")
	experiments := fs.String("experiments", experimentsAll, "which chaos experiments of the files to include: all (as if just applied: each starts), none, or running (those running on --server now, as the server serves them)")
	guardrails := guardrailFlags(fs)
	if code, ok := e.parse(fs, "render", args); !ok {
		return code
	}
	switch {
	case *path == "":
		return e.usageError(fs, "render", "-f is required")
	case *service == "":
		return e.usageError(fs, "render", "--service is required: the service whose proxies receive the configuration")
	case *flavor != string(ir.FlavorEnvoy) && *flavor != string(ir.FlavorGRPC):
		return e.usageError(fs, "render", fmt.Sprintf("--flavor must be envoy or grpc (got %q)", *flavor))
	case *output != "yaml" && *output != "json":
		return e.usageError(fs, "render", "-o must be yaml or json")
	case *experiments != experimentsAll && *experiments != experimentsNone && *experiments != experimentsRunning:
		return e.usageError(fs, "render", fmt.Sprintf("--experiments must be all, none or running (got %q)", *experiments))
	}
	b, probs, err := check(*path, e.stdin, *guardrails)
	if err != nil {
		fmt.Fprintf(e.stderr, "bulwarkctl render: %v\n", err)
		return exitFailed
	}
	if len(probs) > 0 {
		reportProblems(e.stderr, probs)
		return exitFailed
	}
	set := b.set()
	if code, ok := e.selectExperiments(set, *experiments); !ok {
		return code
	}
	if _, ok := set.Services[*service]; !ok {
		fmt.Fprintf(e.stderr, "bulwarkctl render: service %q is not defined in %s: its proxies would receive every service\n", *service, *path)
	}
	res, errs := xds.Render(set, ir.Flavor(*flavor), *service)
	for _, err := range errs {
		fmt.Fprintf(e.stderr, "%v\n", err)
	}
	if res != nil {
		out, err := marshal(res, *output)
		if err != nil {
			fmt.Fprintf(e.stderr, "bulwarkctl render: %v\n", err)
			return exitFailed
		}
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		e.stdout.Write(out)
	}
	if len(errs) > 0 {
		return exitFailed
	}
	return exitOK
}

// marshal renders resources as YAML, or as indented JSON for people and jq.
func marshal(res *translate.Resources, format string) ([]byte, error) {
	if format == "yaml" {
		return xds.MarshalYAML(res)
	}
	compact, err := xds.MarshalJSON(res)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact, "", "  "); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
