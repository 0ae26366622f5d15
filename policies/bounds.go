package policies

import (
	"fmt"
	"math"
	"time"
)

// The bounds of every numeric and duration setting of a PolicySpec, in one
// table that policy validation and the IR's validation (xds/ir) both read,
// so that what a policy may say is exactly what translation accepts.
//
// How each bound was chosen, from what Envoy and gRPC do with the value:
//   - counts that Envoy and gRPC carry as uint32 are capped at MaxCount;
//   - a lower bound of 1 where 0 cannot be right: maxConnections,
//     maxPendingRequests and maxRequests of 0 make Envoy refuse every
//     request (with no pending request allowed, the pool never opens a
//     connection); a threshold of 0 consecutive errors or probes trips on
//     nothing; minimumHosts and requestVolume of 0 mean at best what 1 means
//     and at worst judge a host on no requests at all;
//   - bulkhead.maxRetries may be 0: Envoy then lets no retry to the service
//     run, a cluster-wide stop that holds whatever the routes say (and that a
//     retry budget replaces);
//   - successRate.stdevFactor is sent in thousandths (1.9 → 1900), so its
//     smallest value is 0.001 (below that Envoy would read 0) and its largest
//     MaxCount/1000;
//   - every duration is > 0 and at most MaxDuration; timeouts.request,
//     timeouts.idle and retries.perTryTimeout may also be off (see Off).

// MaxCount bounds the counts of a policy: Envoy and gRPC carry them as uint32.
const MaxCount = math.MaxUint32

// MaxDuration bounds every duration of a policy: a hundred years, well inside
// protobuf's Duration and Envoy's millisecond arithmetic.
const MaxDuration = 100 * 365 * 24 * time.Hour

// IntRange is the inclusive range of an integer setting.
type IntRange struct{ Min, Max int }

// NumberRange is the inclusive range of a number setting.
type NumberRange struct{ Min, Max float64 }

// intRanges holds the range of every integer leaf; list leaves (status
// codes) bound each item.
var intRanges = map[string]IntRange{
	"retries.attempts":                               {0, MaxRetryAttempts},
	"retries.statusCodes":                            {100, 599},
	"retries.budget.minConcurrency":                  {0, MaxCount},
	"circuitBreaker.consecutive5xx":                  {1, MaxCount},
	"circuitBreaker.consecutiveGatewayErrors":        {1, MaxCount},
	"circuitBreaker.failurePercentage.threshold":     {0, 100},
	"circuitBreaker.failurePercentage.minimumHosts":  {1, MaxCount},
	"circuitBreaker.failurePercentage.requestVolume": {1, MaxCount},
	"circuitBreaker.successRate.minimumHosts":        {1, MaxCount},
	"circuitBreaker.successRate.requestVolume":       {1, MaxCount},
	"circuitBreaker.maxEjectionPercent":              {0, 100},
	"bulkhead.maxConnections":                        {1, MaxCount},
	"bulkhead.maxPendingRequests":                    {1, MaxCount},
	"bulkhead.maxRequests":                           {1, MaxCount},
	"bulkhead.maxRetries":                            {0, MaxCount},
	"bulkhead.maxRequestsPerConnection":              {1, MaxCount},
	"healthCheck.http.expectedStatuses":              {100, 599},
	"healthCheck.unhealthyThreshold":                 {1, MaxCount},
	"healthCheck.healthyThreshold":                   {1, MaxCount},
}

// numberRanges holds the range of every number leaf.
var numberRanges = map[string]NumberRange{
	"retries.budget.percent":                 {0, 100},
	"circuitBreaker.successRate.stdevFactor": {0.001, MaxCount / 1000.0},
}

// offLeaves are the duration leaves that may be off.
var offLeaves = map[string]bool{"timeouts.request": true, "timeouts.idle": true, "retries.perTryTimeout": true}

// IntBound returns the range of an integer leaf ("bulkhead.maxRetries"). It
// panics for a leaf that has none: the paths are constants, and a test checks
// that every integer leaf has its range.
func IntBound(leaf string) IntRange {
	r, ok := intRanges[leaf]
	if !ok {
		panic("policies: no range for " + leaf)
	}
	return r
}

// NumberBound returns the range of a number leaf; it panics like IntBound.
func NumberBound(leaf string) NumberRange {
	r, ok := numberRanges[leaf]
	if !ok {
		panic("policies: no range for " + leaf)
	}
	return r
}

// OffAllowed reports whether a duration leaf may be off.
func OffAllowed(leaf string) bool { return offLeaves[leaf] }

// Check returns what is wrong with n, or "" when it lies in the range.
func (r IntRange) Check(n int) string {
	switch {
	case n >= r.Min && n <= r.Max:
		return ""
	case r.Max == MaxCount && n < r.Min:
		return fmt.Sprintf("must be at least %d (got %d)", r.Min, n)
	case r.Max == MaxCount:
		return fmt.Sprintf("must be at most %d (got %d)", r.Max, n)
	}
	return fmt.Sprintf("must be between %d and %d (got %d)", r.Min, r.Max, n)
}

// Check returns what is wrong with f, or "" when it lies in the range.
func (r NumberRange) Check(f float64) string {
	if f >= r.Min && f <= r.Max {
		return ""
	}
	return fmt.Sprintf("must be between %s and %s (got %s)", fmtNum(r.Min), fmtNum(r.Max), fmtNum(f))
}

// CheckDuration returns what is wrong with a duration setting, or "" when it
// is valid: it must be > 0 and at most MaxDuration, or off where offOK.
func CheckDuration(d Duration, offOK bool) string {
	switch {
	case d.IsOff() && offOK:
		return ""
	case d.IsOff():
		return "cannot be off: only timeouts.request, timeouts.idle and retries.perTryTimeout can be switched off"
	case d <= 0 && offOK:
		return fmt.Sprintf("must be > 0 (got %s); write off for no timeout", d)
	case d <= 0:
		return fmt.Sprintf("must be > 0 (got %s)", d)
	case d.D() > MaxDuration:
		return fmt.Sprintf("must be at most %s (got %s)", Duration(MaxDuration), d)
	case d.D() < time.Millisecond:
		return fmt.Sprintf("must be at least 1ms (got %s): proxies count these durations in whole milliseconds, and Envoy would truncate it to 0, which for a timeout means none at all", d)
	case d.D()%time.Millisecond != 0:
		return fmt.Sprintf("must be a whole number of milliseconds (got %s): Envoy truncates durations to milliseconds; write %s or %s",
			d, Duration(d.D().Truncate(time.Millisecond)), Duration(d.D().Truncate(time.Millisecond)+time.Millisecond))
	}
	return ""
}
