package translate

import (
	"math"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/bulwarkmesh/bulwark/policies"
)

// Enforcement percentages: a detector the policy configures ejects every
// time it trips; the others never eject.
const (
	enforced    = 100
	notEnforced = 0
)

// outlierDetection maps circuitBreaker (eject failing hosts). Every
// enforcing_* field is set: Envoy's defaults enforce consecutive 5xx and
// success rate at 100% when left unset, which would turn on detectors the
// policy never asked for. Both flavors get the same message; gRPC honours
// the success-rate and failure-percentage detectors.
func outlierDetection(cb *policies.CircuitBreaker) *clusterv3.OutlierDetection {
	if cb == nil {
		return nil
	}
	od := &clusterv3.OutlierDetection{
		EnforcingConsecutive_5Xx:               enforce(cb.Consecutive5xx != nil),
		EnforcingConsecutiveGatewayFailure:     enforce(cb.ConsecutiveGatewayErrors != nil),
		EnforcingSuccessRate:                   enforce(cb.SuccessRate != nil),
		EnforcingFailurePercentage:             enforce(cb.FailurePercentage != nil),
		EnforcingConsecutiveLocalOriginFailure: enforce(false),
		EnforcingLocalOriginSuccessRate:        enforce(false),
		EnforcingFailurePercentageLocalOrigin:  enforce(false),
	}
	if cb.Consecutive5xx != nil {
		od.Consecutive_5Xx = u32(*cb.Consecutive5xx)
	}
	if cb.ConsecutiveGatewayErrors != nil {
		od.ConsecutiveGatewayFailure = u32(*cb.ConsecutiveGatewayErrors)
	}
	if cb.Interval != nil {
		od.Interval = dur(*cb.Interval)
	}
	if cb.BaseEjectionTime != nil {
		od.BaseEjectionTime = dur(*cb.BaseEjectionTime)
	}
	if cb.MaxEjectionPercent != nil {
		od.MaxEjectionPercent = u32(*cb.MaxEjectionPercent)
	}
	if sr := cb.SuccessRate; sr != nil {
		if sr.StdevFactor != nil {
			// Envoy divides by 1000: 1900 means 1.9 standard deviations.
			od.SuccessRateStdevFactor = u32v(uint32(math.Round(*sr.StdevFactor * 1000)))
		}
		if sr.MinimumHosts != nil {
			od.SuccessRateMinimumHosts = u32(*sr.MinimumHosts)
		}
		if sr.RequestVolume != nil {
			od.SuccessRateRequestVolume = u32(*sr.RequestVolume)
		}
	}
	if fp := cb.FailurePercentage; fp != nil {
		if fp.Threshold != nil {
			od.FailurePercentageThreshold = u32(*fp.Threshold)
		}
		if fp.MinimumHosts != nil {
			od.FailurePercentageMinimumHosts = u32(*fp.MinimumHosts)
		}
		if fp.RequestVolume != nil {
			od.FailurePercentageRequestVolume = u32(*fp.RequestVolume)
		}
	}
	return od
}

func enforce(on bool) *wrapperspb.UInt32Value {
	if on {
		return u32(enforced)
	}
	return u32(notEnforced)
}
