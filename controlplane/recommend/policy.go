package recommend

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
)

// policiesFor turns the recommendations into one ResiliencePolicy per
// service (the largest recommendation over its callers) and the lint
// findings of the observations.
func policiesFor(set *policies.Set, items []api.Recommendation, window string) ([]*policies.ResiliencePolicy, []policies.Finding) {
	type want struct{ request, perTry time.Duration }
	per := map[string]*want{}
	findings := []policies.Finding{}
	for _, it := range items {
		findings = append(findings, observed(set, it, window)...)
		if it.RecommendedRequest == "" {
			continue
		}
		w := per[it.Service]
		if w == nil {
			w = &want{}
			per[it.Service] = w
		}
		w.request = max(w.request, parse(it.RecommendedRequest))
		w.perTry = max(w.perTry, parse(it.RecommendedPerTry))
	}
	services := make([]string, 0, len(per))
	for s := range per {
		services = append(services, s)
	}
	sort.Strings(services)
	out := []*policies.ResiliencePolicy{}
	for _, svc := range services {
		w := per[svc]
		p := servicePolicy(set, svc)
		if p.Spec.Timeouts == nil {
			p.Spec.Timeouts = &policies.Timeouts{}
		}
		p.Spec.Timeouts.Request = policies.Dur(w.request)
		eff := set.Resolve("", svc, "")
		if w.perTry > 0 && eff.Spec.Retries != nil {
			if p.Spec.Retries == nil {
				p.Spec.Retries = &policies.Retries{}
			}
			p.Spec.Retries.PerTryTimeout = policies.Dur(w.perTry)
		}
		out = append(out, p)
	}
	return out, findings
}

// servicePolicy returns a copy of the policy that targets exactly svc (no
// route, no sources), or a new one.
func servicePolicy(set *policies.Set, svc string) *policies.ResiliencePolicy {
	names := make([]string, 0, len(set.Policies))
	for n := range set.Policies {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := set.Policies[n]
		if p.Spec.Target.Service == svc && p.Spec.Target.Route == nil && len(p.Spec.Sources) == 0 {
			var c policies.ResiliencePolicy
			b, _ := json.Marshal(p)
			if json.Unmarshal(b, &c) == nil {
				c.Metadata.Revision = 0
				return &c
			}
		}
	}
	name := svc
	if set.Policies[name] != nil {
		name = svc + "-timeouts"
	}
	return &policies.ResiliencePolicy{
		TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindPolicy},
		Metadata: policies.Metadata{Name: name},
		Spec:     policies.PolicySpec{Target: policies.Target{Service: svc}},
	}
}

// observed lints a configured request timeout against the observation: a
// timeout below the p99 fails more than 1% of calls; one more than FarAbove
// times the p99.9 lets a stuck call hold its caller for nothing.
func observed(set *policies.Set, it api.Recommendation, window string) []policies.Finding {
	if it.ConfiguredRequest == "" || it.P99Ms == nil || it.Requests < 1 {
		return nil
	}
	d, err := policies.ParseDuration(it.ConfiguredRequest)
	if err != nil || d.IsOff() {
		return nil
	}
	eff := set.Resolve(it.Caller, it.Service, "")
	policy := eff.From["timeouts.request"]
	cfg := float64(d.D()) / float64(time.Millisecond)
	switch {
	case cfg < *it.P99Ms:
		return []policies.Finding{{Severity: policies.SeverityWarning, Kind: policies.KindPolicy, Name: policy, Field: "spec.timeouts.request",
			Message: fmt.Sprintf("%s is below the p99 latency observed for calls from %s to %s (%.1fms over %s): more than 1%% of these calls time out; the recommendation is %s",
				it.ConfiguredRequest, it.Caller, it.Service, *it.P99Ms, window, orUnknown(it.RecommendedRequest))}}
	case it.P999Ms != nil && cfg > FarAbove*max(*it.P999Ms, 1):
		return []policies.Finding{{Severity: policies.SeverityWarning, Kind: policies.KindPolicy, Name: policy, Field: "spec.timeouts.request",
			Message: fmt.Sprintf("%s is more than %d× the p99.9 latency observed for calls from %s to %s (%.1fms): a stuck call holds its caller far longer than any real one takes; the recommendation is %s",
				it.ConfiguredRequest, FarAbove, it.Caller, it.Service, *it.P999Ms, orUnknown(it.RecommendedRequest))}}
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "none (too little data)"
	}
	return s
}

func parse(s string) time.Duration {
	if s == "" {
		return 0
	}
	d, err := policies.ParseDuration(s)
	if err != nil {
		return 0
	}
	return d.D()
}
