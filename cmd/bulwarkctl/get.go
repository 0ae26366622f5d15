package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
)

// runGet prints resources of a kind, or one, as a table, YAML or JSON.
func runGet(e *env, args []string) int {
	fs := e.newFlagSet("get")
	output := outputFlag(fs, "table", "yaml", "json")
	pos, code, ok := e.parseArgs(fs, "get", args, 1, 2)
	if !ok {
		return code
	}
	k, known := parseKind(pos[0])
	if !known {
		return e.usageError(fs, "get", fmt.Sprintf("unknown kind %q: use %s", pos[0], kindNames))
	}
	if err := checkOutput(*output, "table", "yaml", "json"); err != nil {
		return e.usageError(fs, "get", err.Error())
	}
	c, err := e.newClient()
	if err != nil {
		return e.usageError(fs, "get", err.Error())
	}
	var raws []json.RawMessage
	if len(pos) == 2 {
		var raw json.RawMessage
		if err := c.call("GET", "/v1/"+k.plural+"/"+url.PathEscape(pos[1]), "", nil, &raw); err != nil {
			return e.fail("get", err)
		}
		raws = []json.RawMessage{raw}
	} else {
		var list listAnswer
		if err := c.call("GET", "/v1/"+k.plural, "", nil, &list); err != nil {
			return e.fail("get", err)
		}
		raws = list.Items
	}
	switch *output {
	case "json":
		var err error
		if len(pos) == 2 {
			err = writeRawJSON(e.stdout, raws[0])
		} else {
			err = writeJSON(e.stdout, raws)
		}
		if err != nil {
			return e.fail("get", err)
		}
		return exitOK
	}
	rs, err := decodeStored(raws)
	if err != nil {
		return e.fail("get", err)
	}
	if *output == "yaml" {
		err = resourceYAML(e.stdout, rs)
	} else {
		err = resourceTable(e.stdout, k.kind, rs)
	}
	if err != nil {
		return e.fail("get", err)
	}
	return exitOK
}

// resourceTable prints resources of one kind as an aligned table.
func resourceTable(w io.Writer, kind string, rs []policies.Resource) error {
	if len(rs) == 0 {
		plural := kind
		for _, k := range kinds {
			if k.kind == kind {
				plural = k.plural
			}
		}
		_, err := fmt.Fprintf(w, "no %s\n", plural)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	switch kind {
	case policies.KindService:
		fmt.Fprintln(tw, "NAME\tPROTOCOL\tPORT\tENDPOINTS\tDEPENDENCIES\tSOURCE\tREVISION")
		for _, r := range rs {
			s := r.(*policies.Service)
			eps := strconv.Itoa(len(s.Spec.Endpoints))
			if s.Spec.DNS != "" {
				eps = "dns " + s.Spec.DNS
			}
			deps := "*"
			if s.Spec.Dependencies != nil {
				deps = orDash(strings.Join(s.Spec.Dependencies, ","))
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%d\n", s.Metadata.Name, orDefault(s.Spec.Protocol, policies.DefaultProtocol), s.Spec.Port, eps, deps, orDash(s.Metadata.Source), s.Metadata.Revision)
		}
	case policies.KindPolicy:
		fmt.Fprintln(tw, "NAME\tTARGET\tSOURCES\tSETS\tSOURCE\tREVISION")
		for _, r := range rs {
			p := r.(*policies.ResiliencePolicy)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", p.Metadata.Name, targetString(p.Spec.Target), orDash(strings.Join(p.Spec.Sources, ",")), orDash(strings.Join(policySections(p.Spec), ",")), orDash(p.Metadata.Source), p.Metadata.Revision)
		}
	case policies.KindExperiment:
		fmt.Fprintln(tw, "NAME\tTARGET\tFAULT\tDURATION\tENDS\tSTARTED-BY\tREVISION")
		for _, r := range rs {
			x := r.(*policies.ChaosExperiment)
			ends, by := "-", "-"
			if x.Status != nil {
				ends, by = orDash(x.Status.EndsAt), orDash(x.Status.StartedBy)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", x.Metadata.Name, targetString(x.Spec.Target), faultString(x.Spec), durString(x.Spec.Duration), ends, by, x.Metadata.Revision)
		}
	}
	return tw.Flush()
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func durString(d *policies.Duration) string {
	if d == nil {
		return "-"
	}
	return d.String()
}

// targetString renders a target: "payments", "*", "tier=critical", with " /path".
func targetString(t policies.Target) string {
	s := t.Service
	if s == "" && len(t.Selector) > 0 {
		keys := make([]string, 0, len(t.Selector))
		for k := range t.Selector {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + t.Selector[k]
		}
		s = strings.Join(parts, ",")
	}
	if t.Route != nil {
		s += " " + t.Route.PathPrefix
	}
	return orDash(s)
}

// policySections lists the sections a policy sets.
func policySections(sp policies.PolicySpec) []string {
	var out []string
	add := func(set bool, name string) {
		if set {
			out = append(out, name)
		}
	}
	add(sp.Timeouts != nil, "timeouts")
	add(sp.Retries != nil, "retries")
	add(sp.CircuitBreaker != nil, "circuitBreaker")
	add(sp.Bulkhead != nil, "bulkhead")
	add(sp.HealthCheck != nil, "healthCheck")
	add(sp.Fallback != nil, "fallback")
	return out
}

// faultString renders an experiment's faults: "abort 10% 503, delay 5% 2s".
func faultString(sp policies.ExperimentSpec) string {
	var parts []string
	if a := sp.Abort; a != nil {
		code := strconv.Itoa(a.HTTPStatus)
		if a.GRPCStatus != nil {
			code = "grpc " + strconv.Itoa(*a.GRPCStatus)
		}
		parts = append(parts, fmt.Sprintf("abort %s%% %s", strconv.FormatFloat(a.Percent, 'f', -1, 64), code))
	}
	if d := sp.Delay; d != nil {
		parts = append(parts, fmt.Sprintf("delay %s%% %s", strconv.FormatFloat(d.Percent, 'f', -1, 64), d.Fixed.String()))
	}
	return orDash(strings.Join(parts, ", "))
}

// runDelete deletes one resource; deleting an experiment stops it.
func runDelete(e *env, args []string) int {
	fs := e.newFlagSet("delete")
	force := fs.Bool("force", false, "also delete a resource a directory sync owns (its next pass restores it)")
	pos, code, ok := e.parseArgs(fs, "delete", args, 2, 2)
	if !ok {
		return code
	}
	k, known := parseKind(pos[0])
	if !known {
		return e.usageError(fs, "delete", fmt.Sprintf("unknown kind %q: use %s", pos[0], kindNames))
	}
	c, err := e.newClient()
	if err != nil {
		return e.usageError(fs, "delete", err.Error())
	}
	target := "/v1/" + k.plural + "/" + url.PathEscape(pos[1])
	if *force {
		target += "?force=true"
	}
	var res writeAnswer
	if err := c.call("DELETE", target, "", nil, &res); err != nil {
		return e.fail("delete", err)
	}
	verb := "deleted"
	if k.kind == policies.KindExperiment {
		verb = "stopped"
	}
	fmt.Fprintf(e.stdout, "%s %s %s at revision %d\n", verb, res.Kind, res.Name, res.Revision)
	printWarnings(e.stderr, res.Warnings)
	if policies.HasErrors(res.Warnings) {
		// Done, but it broke something (a fallback that now names nothing):
		// a script must not carry on as if all were well.
		return exitFailed
	}
	return exitOK
}

// listAnswer and writeAnswer are the server's answers with the resources
// left encoded, for policies.DecodeStored.
type (
	listAnswer  = api.ResourceList[json.RawMessage]
	writeAnswer = api.WriteResult[json.RawMessage]
)
