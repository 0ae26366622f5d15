package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// runStatus prints the revision, readiness, rollout and sync state.
func runStatus(e *env, args []string) int {
	fs := e.newFlagSet("status")
	output := outputFlag(fs, "table", "json")
	if _, code, ok := e.parseArgs(fs, "status", args, 0, 0); !ok {
		return code
	}
	if err := checkOutput(*output, "table", "json"); err != nil {
		return e.usageError(fs, "status", err.Error())
	}
	c, err := e.newClient()
	if err != nil {
		return e.usageError(fs, "status", err.Error())
	}
	var raw []byte
	if err := c.call("GET", "/v1/status", "", nil, &raw); err != nil {
		return e.fail("status", err)
	}
	var st api.StatusReport
	if err := json.Unmarshal(raw, &st); err != nil {
		return e.fail("status", err)
	}
	if *output == "json" {
		if err := writeRawJSON(e.stdout, raw); err != nil {
			return e.fail("status", err)
		}
		return statusCode(st)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "revision:\t%d\n", st.Revision)
	fmt.Fprintf(tw, "replica:\t%s\n", st.Replica)
	ready := "yes"
	if !st.Ready {
		ready = "no: " + strings.Join(st.Reasons, "; ")
	}
	fmt.Fprintf(tw, "ready:\t%s\n", ready)
	store := "reachable"
	if !st.StoreUp {
		store = "UNREACHABLE"
	}
	fmt.Fprintf(tw, "store:\t%s\n", store)
	r := st.Rollout
	fmt.Fprintf(tw, "proxies:\t%d: %d converged, %d rejecting, %d pending\n", r.Total, r.Converged, r.Rejecting, r.Pending)
	if s := st.Sync; s != nil {
		state := "ok"
		if !s.OK {
			state = "FAILING: " + s.Error
		}
		fmt.Fprintf(tw, "sync:\t%s (%s), revision %d, last %s\n", s.Dir, state, s.Revision, s.LastSync.Format(time.RFC3339))
	}
	for _, p := range st.Problems {
		where := p.Group
		if where == "" {
			where = "store"
		}
		fmt.Fprintf(tw, "problem:\t%s: %s\n", where, p.Message)
	}
	tw.Flush()
	return statusCode(st)
}

// statusCode is status's exit code: 1 while the replica is not ready or the
// directory sync fails (the mesh keeps its last good configuration, but
// something needs a person), so a script or a probe can act on it; 0 when
// all is well.
func statusCode(st api.StatusReport) int {
	if !st.Ready || (st.Sync != nil && !st.Sync.OK) {
		return exitFailed
	}
	return exitOK
}

// runProxies lists the connected proxies of every replica.
func runProxies(e *env, args []string) int {
	fs := e.newFlagSet("proxies")
	output := outputFlag(fs, "table", "json")
	if _, code, ok := e.parseArgs(fs, "proxies", args, 0, 0); !ok {
		return code
	}
	if err := checkOutput(*output, "table", "json"); err != nil {
		return e.usageError(fs, "proxies", err.Error())
	}
	c, err := e.newClient()
	if err != nil {
		return e.usageError(fs, "proxies", err.Error())
	}
	var raw []byte
	if err := c.call("GET", "/v1/proxies", "", nil, &raw); err != nil {
		return e.fail("proxies", err)
	}
	if *output == "json" {
		if err := writeRawJSON(e.stdout, raw); err != nil {
			return e.fail("proxies", err)
		}
		return exitOK
	}
	var list api.ProxyList
	if err := json.Unmarshal(raw, &list); err != nil {
		return e.fail("proxies", err)
	}
	if len(list.Items) == 0 {
		fmt.Fprintln(e.stdout, "no proxies connected")
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSERVICE\tFLAVOR\tREPLICA\tPROTOCOL\tREVISION\tCONVERGED\tLAST-NACK")
	for _, p := range list.Items {
		nack := "-"
		types := make([]string, 0, len(p.Types))
		for t := range p.Types {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			if n := p.Types[t].LastNack; n != nil {
				nack = t + ": " + n.Error
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%t\t%s\n", p.ID, p.Service, p.Flavor, p.Replica, p.Protocol, p.Revision, p.Converged, nack)
	}
	tw.Flush()
	return exitOK
}

// runConfig prints the exact xDS a proxy (or a group) receives.
func runConfig(e *env, args []string) int {
	fs := e.newFlagSet("config")
	service := fs.String("service", "", "the calling service (node.cluster), instead of NODE")
	flavor := fs.String("flavor", "envoy", "with --service: envoy or grpc")
	pos, code, ok := e.parseArgs(fs, "config", args, 0, 1)
	if !ok {
		return code
	}
	q := url.Values{}
	switch {
	case len(pos) == 1 && *service != "":
		return e.usageError(fs, "config", "give NODE or --service, not both")
	case len(pos) == 1:
		q.Set("node", pos[0])
	case *service != "":
		q.Set("service", *service)
		q.Set("flavor", *flavor)
	default:
		return e.usageError(fs, "config", "give a connected proxy's NODE id, or --service S [--flavor envoy|grpc]")
	}
	c, err := e.newClient()
	if err != nil {
		return e.usageError(fs, "config", err.Error())
	}
	var raw []byte
	if err := c.call("GET", "/v1/config?"+q.Encode(), "", nil, &raw); err != nil {
		return e.fail("config", err)
	}
	if err := writeRawJSON(e.stdout, raw); err != nil {
		return e.fail("config", err)
	}
	return exitOK
}

// runAudit prints the resilience checklist of every service.
func runAudit(e *env, args []string) int {
	fs := e.newFlagSet("audit")
	service := fs.String("service", "", "only this service")
	output := outputFlag(fs, "table", "json")
	if _, code, ok := e.parseArgs(fs, "audit", args, 0, 0); !ok {
		return code
	}
	if err := checkOutput(*output, "table", "json"); err != nil {
		return e.usageError(fs, "audit", err.Error())
	}
	c, err := e.newClient()
	if err != nil {
		return e.usageError(fs, "audit", err.Error())
	}
	path := "/v1/audit"
	if *service != "" {
		path += "?service=" + url.QueryEscape(*service)
	}
	var raw []byte
	if err := c.call("GET", path, "", nil, &raw); err != nil {
		return e.fail("audit", err)
	}
	if *output == "json" {
		if err := writeRawJSON(e.stdout, raw); err != nil {
			return e.fail("audit", err)
		}
		return exitOK
	}
	var rep api.AuditReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return e.fail("audit", err)
	}
	if len(rep.Services) == 0 {
		fmt.Fprintln(e.stdout, "no services")
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tCHECK\tSTATUS\tPROVIDED-BY\tDETAIL")
	var fixes []string
	for _, s := range rep.Services {
		for _, ck := range s.Checks {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Service, ck.Item, ck.Status, orDash(strings.Join(ck.ProvidedBy, ",")), ck.Detail)
			if ck.Fix != "" {
				fixes = append(fixes, fmt.Sprintf("%s %s: %s", s.Service, ck.Item, ck.Fix))
			}
		}
		fmt.Fprintf(tw, "%s\t%d/%d passed\t\t\t\n", s.Service, s.Passed, s.Total)
	}
	tw.Flush()
	if len(fixes) > 0 {
		fmt.Fprintln(e.stdout, "\nTo do:")
		for _, f := range fixes {
			fmt.Fprintln(e.stdout, "  "+f)
		}
	}
	return exitOK
}
