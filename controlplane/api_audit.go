package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// Audit check names, in the order the report lists them.
const (
	AuditTimeouts       = "timeouts"
	AuditCircuitBreaker = "circuitBreaker"
	AuditRetries        = "retries"
	AuditBulkhead       = "bulkhead"
	AuditFallback       = "fallback"
	AuditHealthCheck    = "healthCheck"
	AuditChaos          = "chaos"
)

// Audit statuses.
const (
	AuditOK      = "ok"
	AuditPartial = "partial" // some callers have it, others not
	AuditMissing = "missing"
)

// AuditWindow is how recent a chaos experiment must be to count.
const AuditWindow = 30 * 24 * time.Hour

// AuditReport is the answer of GET /v1/audit: the resilience checklist of
// every service.
type AuditReport struct {
	Revision    int64          `json:"revision"`
	GeneratedAt time.Time      `json:"generatedAt"`
	Services    []ServiceAudit `json:"services"`
}

// ServiceAudit is one service's checklist.
type ServiceAudit struct {
	Service string       `json:"service"`
	Passed  int          `json:"passed"`
	Total   int          `json:"total"`
	Checks  []AuditCheck `json:"checks"`
}

// AuditCheck is one item of the checklist: whether calls to the service
// have it, which policies (or experiments) provide it, and what to add when
// it is missing.
type AuditCheck struct {
	Item       string   `json:"item"`
	Status     string   `json:"status"`
	ProvidedBy []string `json:"providedBy,omitempty"`
	Detail     string   `json:"detail"`
	// MissingFor lists the callers whose calls lack it ("*" stands for
	// callers that no source-scoped policy names).
	MissingFor []string `json:"missingFor,omitempty"`
	Fix        string   `json:"fix,omitempty"`
}

// Audit computes the checklist for every service (or one, when service is
// not ""), from the store's current content and the experiment history.
func (cp *ControlPlane) Audit(ctx context.Context, service string, now time.Time) (*AuditReport, error) {
	set, rev, _, err := cp.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	if service != "" && set.Services[service] == nil {
		return nil, fmt.Errorf("service %q: %w", service, store.ErrNotFound)
	}
	hist, err := cp.store.History(ctx)
	if err != nil {
		return nil, err
	}
	rep := &AuditReport{Revision: rev, GeneratedAt: now.UTC(), Services: []ServiceAudit{}}
	for _, svc := range set.ServiceNames() {
		if service != "" && svc != service {
			continue
		}
		sa := ServiceAudit{Service: svc, Checks: auditCalls(set, svc)}
		sa.Checks = append(sa.Checks, auditChaos(set, hist, svc, now))
		for _, c := range sa.Checks {
			sa.Total++
			if c.Status == AuditOK {
				sa.Passed++
			}
		}
		rep.Services = append(rep.Services, sa)
	}
	return rep, nil
}

// auditItem describes how to tell whether a merged policy has an item.
type auditItem struct {
	name   string
	prefix string // the leaves that provide it
	has    func(set *policies.Set, sp *policies.PolicySpec) (bool, string)
	fix    string
}

var auditItems = []auditItem{
	{AuditTimeouts, "timeouts.request", func(_ *policies.Set, sp *policies.PolicySpec) (bool, string) {
		if sp.Timeouts == nil || sp.Timeouts.Request == nil {
			return false, "calls have no request timeout: a slow dependency holds callers forever"
		}
		return true, "request timeout " + sp.Timeouts.Request.String()
	}, "set timeouts.request (for example 3s) in a policy targeting %[1]s, or in a mesh default with target.service \"*\""},
	{AuditCircuitBreaker, "circuitBreaker.", func(_ *policies.Set, sp *policies.PolicySpec) (bool, string) {
		if sp.CircuitBreaker == nil {
			return false, "failing hosts are never ejected"
		}
		return true, "outlier ejection configured"
	}, "add circuitBreaker (for example consecutive5xx: 5, baseEjectionTime: 30s) to a policy targeting %[1]s"},
	{AuditRetries, "retries.", func(_ *policies.Set, sp *policies.PolicySpec) (bool, string) {
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
	{AuditBulkhead, "bulkhead.", func(_ *policies.Set, sp *policies.PolicySpec) (bool, string) {
		if sp.Bulkhead == nil {
			return false, "no connection-pool limits: one slow dependency can exhaust callers"
		}
		return true, "connection-pool limits configured"
	}, "add bulkhead (for example maxConnections: 100, maxPendingRequests: 50, maxRequests: 200) to a policy targeting %[1]s"},
	{AuditFallback, "fallback.", func(set *policies.Set, sp *policies.PolicySpec) (bool, string) {
		if sp.Fallback == nil || sp.Fallback.Service == "" {
			return false, "no graceful degradation when every host fails"
		}
		if set.Services[sp.Fallback.Service] == nil {
			return false, fmt.Sprintf("the fallback service %q does not exist", sp.Fallback.Service)
		}
		return true, "falls back to " + sp.Fallback.Service
	}, "add fallback: {service: %[1]s-fallback} (a Service that degrades gracefully) to a policy targeting %[1]s"},
	{AuditHealthCheck, "healthCheck.", func(_ *policies.Set, sp *policies.PolicySpec) (bool, string) {
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
func auditCalls(set *policies.Set, svc string) []AuditCheck {
	sources := set.Sources()
	effs := make([]policies.Effective, len(sources))
	for i, src := range sources {
		effs[i] = set.Resolve(src, svc, "")
	}
	out := make([]AuditCheck, 0, len(auditItems))
	for _, it := range auditItems {
		c := AuditCheck{Item: it.name}
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
		c.ProvidedBy = sortedSet(from)
		switch {
		case have == len(sources):
			c.Status, c.Detail, c.MissingFor = AuditOK, okDetail, nil
		case have == 0:
			c.Status, c.Detail, c.MissingFor = AuditMissing, missDetail, nil
			c.Fix = fmt.Sprintf(it.fix, svc)
		default:
			c.Status = AuditPartial
			c.Detail = fmt.Sprintf("%s for some callers; missing for %s: %s", okDetail, strings.Join(c.MissingFor, ", "), missDetail)
			c.Fix = fmt.Sprintf(it.fix, svc) + " without sources, so every caller gets it"
		}
		out = append(out, c)
	}
	return out
}

// auditChaos checks for a chaos experiment on svc within AuditWindow:
// running, or recorded in the history.
func auditChaos(set *policies.Set, hist []*policies.ChaosExperiment, svc string, now time.Time) AuditCheck {
	c := AuditCheck{Item: AuditChaos}
	var latest time.Time
	var latestName string
	seen := map[string]bool{}
	consider := func(e *policies.ChaosExperiment) {
		if e.Spec.Target.Service != svc || e.Status == nil {
			return
		}
		started, err := time.Parse(time.RFC3339Nano, e.Status.StartedAt)
		if err != nil || now.Sub(started) > AuditWindow {
			return
		}
		if !seen[e.Metadata.Name] {
			seen[e.Metadata.Name] = true
			c.ProvidedBy = append(c.ProvidedBy, e.Metadata.Name)
		}
		if started.After(latest) {
			latest, latestName = started, e.Metadata.Name
		}
	}
	for _, e := range hist {
		consider(e)
	}
	for _, name := range sortedKeys(set.Experiments) {
		consider(set.Experiments[name])
	}
	sort.Strings(c.ProvidedBy)
	if latestName == "" {
		c.Status = AuditMissing
		c.Detail = fmt.Sprintf("no chaos experiment on %s in the last %d days: its resilience is untested", svc, int(AuditWindow.Hours()/24))
		c.Fix = fmt.Sprintf("run a game day: bulwarkctl chaos start -f with a ChaosExperiment targeting %s (abort or delay a small percent for a few minutes)", svc)
		return c
	}
	c.Status = AuditOK
	c.Detail = fmt.Sprintf("last experiment %s started %s", latestName, latest.UTC().Format(time.RFC3339))
	return c
}

// callerName renders a policy source for people.
func callerName(src string) string {
	if src == "" {
		return "*"
	}
	return src
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// serveAudit answers GET /v1/audit (?service=S for one service).
func (cp *ControlPlane) serveAudit(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := cp.storeCtx(r)
	defer cancel()
	rep, err := cp.Audit(ctx, r.URL.Query().Get("service"), time.Now())
	if err != nil {
		cp.sendError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
