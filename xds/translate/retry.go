package translate

import (
	"slices"
	"strings"
	"sync"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/bulwarkmesh/bulwark/xds/ir"
)

const (
	// previousHostsPredicate makes a retry prefer a host not tried before.
	previousHostsPredicate = "envoy.retry_host_predicates.previous_hosts"
	// hostSelectionAttempts bounds the attempts to find such a host.
	hostSelectionAttempts = 3
	// retriableStatusCodes is the retry_on condition that enables status codes.
	retriableStatusCodes = "retriable-status-codes"
)

// retryPolicy maps a route's retries. No policy when attempts is 0. Envoy
// gets every condition (plus retriable-status-codes when status codes are
// set), the idempotent methods as ":method" matchers and a previous-hosts
// predicate. gRPC honours gRPC status conditions only and NACKs num_retries
// 0, so it gets no policy when attempts is 0 or no gRPC condition remains.
// Conditions, codes and methods are sorted so that equal policies give equal
// bytes.
func retryPolicy(flavor ir.Flavor, r *ir.Retry) (*routev3.RetryPolicy, error) {
	if r == nil || r.Attempts <= 0 {
		return nil, nil
	}
	on := sortedUnique(r.On) // may be r.On itself: never modified below
	if flavor == ir.FlavorGRPC {
		var kept []string
		for _, c := range on {
			if slices.Contains(ir.GRPCRetryConditions, c) {
				kept = append(kept, c)
			}
		}
		if len(kept) == 0 {
			return nil, nil
		}
		on = kept
	} else if len(r.StatusCodes) > 0 && !slices.Contains(on, retriableStatusCodes) {
		on = append(slices.Clip(slices.Clone(on)), retriableStatusCodes)
		slices.Sort(on)
	}
	p := &routev3.RetryPolicy{
		RetryOn:      strings.Join(on, ","),
		NumRetries:   u32(r.Attempts),
		RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: dur(r.BackoffBase), MaxInterval: dur(r.BackoffMax)},
	}
	if flavor == ir.FlavorGRPC {
		return p, nil
	}
	if r.PerTryTimeout != nil {
		p.PerTryTimeout = dur(*r.PerTryTimeout)
	}
	codes := slices.Clone(r.StatusCodes)
	slices.Sort(codes)
	for _, c := range slices.Compact(codes) {
		p.RetriableStatusCodes = append(p.RetriableStatusCodes, uint32(c))
	}
	methods := sortedUnique(r.Methods)
	p.RetriableRequestHeaders = make([]*routev3.HeaderMatcher, len(methods))
	for i, m := range methods {
		p.RetriableRequestHeaders[i] = methodMatcher(m)
	}
	pred, err := previousHosts()
	if err != nil {
		return nil, err
	}
	p.RetryHostPredicate = pred
	p.HostSelectionRetryMaxAttempts = hostSelectionAttempts
	return p, nil
}

// previousHosts is the retry host predicate of every Envoy retry policy,
// built once and shared.
var previousHosts = sync.OnceValues(func() ([]*routev3.RetryPolicy_RetryHostPredicate, error) {
	pred, err := toAny(&previoushostsv3.PreviousHostsPredicate{})
	if err != nil {
		return nil, err
	}
	return []*routev3.RetryPolicy_RetryHostPredicate{{
		Name:       previousHostsPredicate,
		ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: pred},
	}}, nil
})

// methodMatchers holds one shared ":method" matcher per method.
var methodMatchers sync.Map // method → *routev3.HeaderMatcher

func methodMatcher(m string) *routev3.HeaderMatcher {
	if h, ok := methodMatchers.Load(m); ok {
		return h.(*routev3.HeaderMatcher)
	}
	h, _ := methodMatchers.LoadOrStore(m, exactHeader(":method", m))
	return h.(*routev3.HeaderMatcher)
}

// sortedUnique returns in sorted without duplicates; in itself when it
// already is (it is never modified).
func sortedUnique(in []string) []string {
	ok := true
	for i := 1; i < len(in) && ok; i++ {
		ok = in[i-1] < in[i]
	}
	if ok {
		return in
	}
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

// exactHeader matches a header with an exact value.
func exactHeader(name, value string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{
		Name: name,
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value},
		}},
	}
}
