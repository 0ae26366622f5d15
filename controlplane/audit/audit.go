// Package audit computes the resilience checklist of every service (GET
// /v1/audit): timeouts, circuit breaker, retries with backoff, bulkhead,
// fallback, health check and a recent chaos experiment, each with the
// policies that provide it or what to add.
//
// It is a pure function of a policy set and the experiment history: it
// owns no state and must not import the store, the xDS server or any
// package that does I/O.
package audit

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
)

// Report computes the checklist for every service of set (or only service,
// when it is not ""; the caller checks that it exists), read at store
// revision rev, with hist the experiment history.
func Report(set *policies.Set, rev int64, hist []*policies.ChaosExperiment, service string, now time.Time) *api.AuditReport {
	rep := &api.AuditReport{Revision: rev, GeneratedAt: now.UTC(), Services: []api.ServiceAudit{}}
	for _, svc := range set.ServiceNames() {
		if service != "" && svc != service {
			continue
		}
		sa := api.ServiceAudit{Service: svc, Checks: auditCalls(set, svc)}
		sa.Checks = append(sa.Checks, auditChaos(set, hist, svc, now))
		for _, c := range sa.Checks {
			sa.Total++
			if c.Status == api.AuditOK {
				sa.Passed++
			}
		}
		rep.Services = append(rep.Services, sa)
	}
	return rep
}

// auditItem describes how to tell whether a merged policy has an item.
type auditItem struct {
	name   string
	prefix string // the leaves that provide it
	has    func(set *policies.Set, sp *policies.PolicySpec) (bool, string)
	fix    string
}

var auditItems = []auditItem{
	{api.AuditTimeouts, "timeouts.request", func(_ *policies.Set, sp *policies.PolicySpec) (bool, string) {
		if sp.Timeouts == nil || sp.Timeouts.Request == nil {
			return false, "calls have no request timeout: a slow dependency holds callers forever"
		}
		if sp.Timeouts.Request.IsOff() {
			return false, "the request timeout is switched off (timeouts.request: off): a slow dependency holds callers forever"
		}
		return true, "request timeout " + sp.Timeouts.Request.String()
	}, "set timeouts.request (for example 3s) in a policy targeting %[1]s, or in a mesh default with target.service \"*\""},
	{api.AuditCircuitBreaker, "circuitBreaker.", func(_ *policies.Set, sp *policies.PolicySpec) (bool, string) {
		if sp.CircuitBreaker == nil {
			return false, "failing hosts are never ejected"
		}
		return true, "outlier ejection configured"
	}, "add circuitBreaker (for example consecutive5xx: 5, baseEjectionTime: 30s) to a policy targeting %[1]s"},
	{api.AuditRetries, "retries.", func(_ *policies.Set, sp *policies.PolicySpec) (bool, string) {
		r := sp.Retries
		if r == nil {
			return false, "failed calls are not retried"
		}
		attempts := policies.DefaultRetryAttempts
		if r.Attempts != nil {
			attempts = *r.Attempts
		}
		if attempts == 0 {
			return false, "retries are disabled (attempts: 0)"
		}
		base, max := policies.DefaultBackoffBase, policies.DefaultBackoffBase*policies.DefaultBackoffMaxFactor
		how := "default backoff"
		if r.Backoff != nil && r.Backoff.Base != nil {
			base, max, how = r.Backoff.Base.D(), r.Backoff.Base.D()*policies.DefaultBackoffMaxFactor, "backoff"
		}
		if r.Backoff != nil && r.Backoff.Max != nil {
			max = r.Backoff.Max.D()
		}
		return true, fmt.Sprintf("%d retries, %s %s to %s with jitter", attempts, how, base, max)
	}, "add retries (for example attempts: 2, backoff: {base: 25ms, max: 250ms}, budget: {percent: 20}) to a policy targeting %[1]s"},
	{api.AuditBulkhead, "bulkhead.", func(_ *policies.Set, sp *policies.PolicySpec) (bool, string) {
		if sp.Bulkhead == nil {
			return false, "no connection-pool limits: one slow dependency can exhaust callers"
		}
		return true, "connection-pool limits configured"
	}, "add bulkhead (for example maxConnections: 100, maxPendingRequests: 50, maxRequests: 200) to a policy targeting %[1]s"},
	{api.AuditFallback, "fallback.", func(set *policies.Set, sp *policies.PolicySpec) (bool, string) {
		if sp.Fallback == nil || sp.Fallback.Service == "" {
			return false, "no graceful degradation when every host fails"
		}
		if set.Services[sp.Fallback.Service] == nil {
			return false, fmt.Sprintf("the fallback service %q does not exist", sp.Fallback.Service)
		}
		return true, "falls back to " + sp.Fallback.Service
	}, "add fallback: {service: %[1]s-fallback} (a Service that degrades gracefully) to a policy targeting %[1]s"},
	{api.AuditHealthCheck, "healthCheck.", func(_ *policies.Set, sp *policies.PolicySpec) (bool, string) {
		hc := sp.HealthCheck
		if hc == nil || (hc.HTTP == nil && hc.GRPC == nil && hc.TCP == nil) {
			return false, "no active health check: dead hosts are found only by failing calls"
		}
		switch {
		case hc.HTTP != nil:
			return true, "active HTTP health check on " + hc.HTTP.Path
		case hc.GRPC != nil:
			return true, "active gRPC health check"
		}
		return true, "active TCP health check"
	}, "add healthCheck (for example http: {path: /healthz}, interval: 5s, timeout: 1s) to a policy targeting %[1]s"},
}

// auditCalls checks the merged policy of every caller of svc.
func auditCalls(set *policies.Set, svc string) []api.AuditCheck {
	sources := set.Sources()
	effs := make([]policies.Effective, len(sources))
	for i, src := range sources {
		effs[i] = set.Resolve(src, svc, "")
	}
	out := make([]api.AuditCheck, 0, len(auditItems))
	for _, it := range auditItems {
		c := api.AuditCheck{Item: it.name}
		from := map[string]bool{}
		var have int
		var okDetail, missDetail string
		for i, src := range sources {
			ok, detail := it.has(set, &effs[i].Spec)
			if !ok {
				missDetail = detail
				c.MissingFor = append(c.MissingFor, callerName(src))
				continue
			}
			have++
			if okDetail == "" || src == "" {
				okDetail = detail
			}
			for leaf, p := range effs[i].From {
				if leaf == it.prefix || (strings.HasSuffix(it.prefix, ".") && strings.HasPrefix(leaf, it.prefix)) {
					from[p] = true
				}
			}
		}
		c.ProvidedBy = slices.Sorted(maps.Keys(from))
		switch {
		case have == len(sources):
			c.Status, c.Detail, c.MissingFor = api.AuditOK, okDetail, nil
		case have == 0:
			c.Status, c.Detail, c.MissingFor = api.AuditMissing, missDetail, nil
			c.Fix = fmt.Sprintf(it.fix, svc)
		default:
			c.Status = api.AuditPartial
			c.Detail = fmt.Sprintf("%s for some callers; missing for %s: %s", okDetail, strings.Join(c.MissingFor, ", "), missDetail)
			c.Fix = fmt.Sprintf(it.fix, svc) + " without sources, so every caller gets it"
		}
		out = append(out, c)
	}
	return out
}

// auditChaos checks for a chaos experiment on svc within api.AuditWindow:
// running, or recorded in the history.
func auditChaos(set *policies.Set, hist []*policies.ChaosExperiment, svc string, now time.Time) api.AuditCheck {
	c := api.AuditCheck{Item: api.AuditChaos}
	var latest time.Time
	var latestName, latestVerdict string
	seen := map[string]bool{}
	consider := func(e *policies.ChaosExperiment) {
		if e.Spec.Target.Service != svc || e.Status == nil {
			return
		}
		started, err := time.Parse(time.RFC3339Nano, e.Status.StartedAt)
		if err != nil || now.Sub(started) > api.AuditWindow {
			return
		}
		if !seen[e.Metadata.Name] {
			seen[e.Metadata.Name] = true
			c.ProvidedBy = append(c.ProvidedBy, e.Metadata.Name)
		}
		if started.After(latest) {
			latest, latestName, latestVerdict = started, e.Metadata.Name, e.Status.Verdict
		}
	}
	for _, e := range hist {
		consider(e)
	}
	for _, name := range slices.Sorted(maps.Keys(set.Experiments)) {
		consider(set.Experiments[name])
	}
	sort.Strings(c.ProvidedBy)
	if latestName == "" {
		c.Status = api.AuditMissing
		c.Detail = fmt.Sprintf("no chaos experiment on %s in the last %d days: its resilience is untested", svc, int(api.AuditWindow.Hours()/24))
		c.Fix = fmt.Sprintf("run a game day: bulwarkctl chaos start -f (or chaos run --wait -f, with a steadyState hypothesis) with a ChaosExperiment targeting %s (abort or delay a small percent for a few minutes)", svc)
		return c
	}
	c.Status = api.AuditOK
	c.Detail = fmt.Sprintf("last experiment %s started %s", latestName, latest.UTC().Format(time.RFC3339))
	if latestVerdict != "" {
		c.Detail += "; its hypothesis: " + latestVerdict
	}
	if latestVerdict == policies.VerdictFailed || latestVerdict == policies.VerdictAborted {
		c.Fix = fmt.Sprintf("the last game day on %s broke its hypothesis: see its readings (bulwarkctl chaos list --history -o yaml) and the runbook experiment-breached-hypothesis", svc)
	}
	return c
}

// callerName renders a policy source for people.
func callerName(src string) string {
	if src == "" {
		return "*"
	}
	return src
}
