// Package recommend turns observed latency into timeouts, the seed's rule
// "set timeouts at the 99th percentile of expected latency": per caller
// and service, the p50, p99 and p99.9 latency and the error rate over a
// window, read from Prometheus through the query templates, and a request
// and per-try timeout by a documented rule (docs/prometheus.md), as a
// report and as ResiliencePolicies that validate and lint clean.
//
// It must not import the store, the admin API, the builder or the xDS
// server: it reads a policy set and a Prometheus.
package recommend

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/prom"
	"github.com/bulwarkmesh/bulwark/policies"
)

// Defaults of a report.
const (
	DefaultWindow      = time.Hour
	DefaultMinRequests = 100
	// FarAbove is how many times the observed p99.9 a configured request
	// timeout may be before lint says it is far above what calls need.
	FarAbove = 10
)

// Rule says how a recommendation is computed; the report carries it.
const Rule = "request = max(1.5 × p99.9, 2 × p99, attempts × perTry + backoff waits + perTry), rounded up to 10ms; " +
	"perTry = max(2 × attempt p99, attempt p99.9), rounded up to 10ms (Envoy only: proxyless gRPC ignores perTryTimeout); " +
	"no recommendation under minRequests calls in the window"

// Querier runs an instant query; *prom.Client is one.
type Querier interface {
	Query(ctx context.Context, query string, at time.Time) ([]prom.Sample, error)
}

// Recommender reads observations and recommends timeouts.
type Recommender struct {
	Q           Querier
	T           prom.Templates
	MinRequests int
}

// Report recommends timeouts for service (every service when empty) from
// what was observed over window.
func (r *Recommender) Report(ctx context.Context, set *policies.Set, service string, window time.Duration) (*api.RecommendationReport, error) {
	if window <= 0 {
		window = DefaultWindow
	}
	minReq := r.MinRequests
	if minReq <= 0 {
		minReq = DefaultMinRequests
	}
	rep := &api.RecommendationReport{Window: prom.Window(window), MinRequests: minReq, Rule: Rule,
		Items: []api.Recommendation{}, Policies: []*policies.ResiliencePolicy{}, Findings: []policies.Finding{}}
	var services []string
	for name := range set.Services {
		if service == "" || name == service {
			services = append(services, name)
		}
	}
	sort.Strings(services)
	for _, svc := range services {
		for _, fl := range []struct {
			name string
			q    prom.FlavorQueries
		}{{"envoy", r.T.Envoy}, {"grpc", r.T.GRPC}} {
			items, err := r.observe(ctx, set, svc, fl.name, fl.q, window, minReq)
			if err != nil {
				return nil, err
			}
			rep.Items = append(rep.Items, items...)
		}
	}
	rep.Policies, rep.Findings = policiesFor(set, rep.Items, rep.Window)
	return rep, nil
}

// observe reads one flavor's metrics of one service, by caller.
func (r *Recommender) observe(ctx context.Context, set *policies.Set, svc, flavor string, q prom.FlavorQueries, window time.Duration, minReq int) ([]api.Recommendation, error) {
	vars := prom.Vars{Service: svc, Window: prom.Window(window), CallerLabel: r.T.CallerLabel}
	requests, err := r.byCaller(ctx, q.Requests, vars)
	if err != nil || len(requests) == 0 {
		return nil, err
	}
	quantile := func(tmpl, qv string) (map[string]float64, error) {
		v := vars
		v.Quantile = qv
		return r.byCaller(ctx, tmpl, v)
	}
	p50, err := quantile(q.Latency, "0.5")
	if err != nil {
		return nil, err
	}
	p99, err := quantile(q.Latency, "0.99")
	if err != nil {
		return nil, err
	}
	p999, err := quantile(q.Latency, "0.999")
	if err != nil {
		return nil, err
	}
	ap99, err := quantile(q.AttemptLatency, "0.99")
	if err != nil {
		return nil, err
	}
	ap999, err := quantile(q.AttemptLatency, "0.999")
	if err != nil {
		return nil, err
	}
	errs, err := r.byCaller(ctx, q.ErrorRatio, vars)
	if err != nil {
		return nil, err
	}
	callers := make([]string, 0, len(requests))
	for c := range requests {
		callers = append(callers, c)
	}
	sort.Strings(callers)
	var out []api.Recommendation
	for _, caller := range callers {
		rec := api.Recommendation{Caller: caller, Service: svc, Flavor: flavor, Requests: math.Round(requests[caller])}
		rec.P50Ms, rec.P99Ms, rec.P999Ms = ms(p50, caller), ms(p99, caller), ms(p999, caller)
		rec.AttemptP99Ms = ms(ap99, caller)
		if v, ok := errs[caller]; ok && !math.IsNaN(v) {
			rec.ErrorRate = &v
		}
		eff := set.Resolve(caller, svc, "")
		policies.DefaultEffective(&eff.Spec)
		sp := eff.Spec
		if sp.Timeouts != nil && sp.Timeouts.Request != nil {
			rec.ConfiguredRequest = sp.Timeouts.Request.String()
		}
		if sp.Retries != nil && sp.Retries.PerTryTimeout != nil {
			rec.ConfiguredPerTry = sp.Retries.PerTryTimeout.String()
		}
		switch {
		case requests[caller] < float64(minReq):
			rec.Reason = fmt.Sprintf("too little data: %.0f calls in %s, fewer than %d", requests[caller], prom.Window(window), minReq)
		case rec.P99Ms == nil || rec.P999Ms == nil:
			rec.Reason = "no latency histogram for these calls"
		default:
			recommend(&rec, sp, flavor, ms(ap999, caller))
		}
		out = append(out, rec)
	}
	return out, nil
}

// recommend applies the rule.
func recommend(rec *api.Recommendation, sp policies.PolicySpec, flavor string, attemptP999 *float64) {
	p99, p999 := *rec.P99Ms, *rec.P999Ms
	request := math.Max(1.5*p999, 2*p99)
	if flavor == "envoy" {
		ap99, ap999 := p99, p999
		if rec.AttemptP99Ms != nil {
			ap99 = *rec.AttemptP99Ms
		}
		if attemptP999 != nil {
			ap999 = *attemptP999
		}
		perTry := roundUp10(math.Max(2*ap99, ap999))
		rec.RecommendedPerTry = policies.Duration(perTry).String()
		if r := sp.Retries; r != nil && r.Attempts != nil && *r.Attempts > 0 {
			waits := backoffWaits(*r.Attempts, r.Backoff.Base.D(), r.Backoff.Max.D())
			need := time.Duration(*r.Attempts+1)*perTry + waits
			request = math.Max(request, float64(need)/float64(time.Millisecond))
		}
	}
	rec.RecommendedRequest = policies.Duration(roundUp10(request)).String()
}

// backoffWaits is the longest total wait before n retries, as lint counts it.
func backoffWaits(n int, base, maxWait time.Duration) time.Duration {
	var total time.Duration
	step := base
	for range n {
		total += min(step, maxWait)
		step *= 2
	}
	return total
}

// roundUp10 rounds milliseconds up to a whole 10 ms, at least 10 ms.
func roundUp10(msv float64) time.Duration {
	return time.Duration(max(1, math.Ceil(msv/10))) * 10 * time.Millisecond
}

func ms(m map[string]float64, caller string) *float64 {
	v, ok := m[caller]
	if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	v = math.Round(v*1e6) / 1e3 // seconds → ms, to the microsecond
	return &v
}

// byCaller runs a template and maps its series by the caller label.
func (r *Recommender) byCaller(ctx context.Context, tmpl string, v prom.Vars) (map[string]float64, error) {
	q, err := r.T.Render(tmpl, v)
	if err != nil || q == "" {
		return nil, err
	}
	ss, err := r.Q.Query(ctx, q, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	out := map[string]float64{}
	for _, s := range ss {
		out[s.Labels[v.CallerLabel]] = s.Value
	}
	return out, nil
}
