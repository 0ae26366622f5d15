package policies

import "time"

// Defaults, in one place. Policies merge before defaults are applied, so an
// unset field inherits from a less specific policy first and falls back to
// these values last. docs/policies.md lists them.
const (
	DefaultProtocol           = ProtocolHTTP
	DefaultEndpointWeight     = 1
	DefaultConnectTimeout     = 5 * time.Second
	DefaultRetryAttempts      = 2
	DefaultBackoffBase        = 25 * time.Millisecond
	DefaultBackoffMaxFactor   = 10 // Envoy's default: max = 10 × base
	DefaultBudgetPercent      = 20.0
	DefaultBudgetMinConc      = 3
	DefaultCBInterval         = 10 * time.Second
	DefaultCBBaseEjectionTime = 30 * time.Second
	DefaultCBMaxEjectionPct   = 10
	DefaultFPThreshold        = 85
	DefaultFPMinimumHosts     = 5
	DefaultFPRequestVolume    = 50
	DefaultSRStdevFactor      = 1.9
	DefaultSRMinimumHosts     = 5
	DefaultSRRequestVolume    = 100
	DefaultHCInterval         = 5 * time.Second
	DefaultHCTimeout          = 1 * time.Second
	DefaultHCUnhealthy        = 3
	DefaultHCHealthy          = 2
)

// DefaultRetryOn is the retry condition list when a policy retries without naming any.
var DefaultRetryOn = []string{"connect-failure", "refused-stream", "reset", "unavailable"}

// DefaultService fills the unset fields of a service.
func DefaultService(s *Service) {
	if s.Spec.Protocol == "" {
		s.Spec.Protocol = DefaultProtocol
	}
	for i := range s.Spec.Endpoints {
		if s.Spec.Endpoints[i].Weight == 0 {
			s.Spec.Endpoints[i].Weight = DefaultEndpointWeight
		}
	}
}

// DefaultEffective fills the unset leaves of a merged policy spec whose
// section is present. A section nobody set stays nil: no retries, no outlier
// detection, no health check.
func DefaultEffective(p *PolicySpec) {
	if p.Timeouts == nil {
		p.Timeouts = &Timeouts{}
	}
	if p.Timeouts.Connect == nil {
		p.Timeouts.Connect = Dur(DefaultConnectTimeout)
	}
	if r := p.Retries; r != nil {
		if r.Attempts == nil {
			r.Attempts = Ptr(DefaultRetryAttempts)
		}
		if len(r.On) == 0 && len(r.StatusCodes) == 0 {
			r.On = append([]string(nil), DefaultRetryOn...)
		}
		if r.Backoff == nil {
			r.Backoff = &Backoff{}
		}
		if r.Backoff.Base == nil {
			// Envoy refuses a max below the base: a max set below the
			// default base lowers the base to it.
			base := DefaultBackoffBase
			if m := r.Backoff.Max; m != nil && m.D() > 0 && m.D() < base {
				base = m.D()
			}
			r.Backoff.Base = Dur(base)
		}
		if r.Backoff.Max == nil {
			m := r.Backoff.Base.D() * DefaultBackoffMaxFactor
			if r.Backoff.Base.D() > MaxDuration/DefaultBackoffMaxFactor {
				m = MaxDuration // 10 × base would overflow; a longer backoff means nothing anyway
			}
			r.Backoff.Max = Dur(m)
		}
		if b := r.Budget; b != nil {
			if b.Percent == nil {
				b.Percent = Ptr(DefaultBudgetPercent)
			}
			if b.MinConcurrency == nil {
				b.MinConcurrency = Ptr(DefaultBudgetMinConc)
			}
		}
	}
	if cb := p.CircuitBreaker; cb != nil {
		if cb.Interval == nil {
			cb.Interval = Dur(DefaultCBInterval)
		}
		if cb.BaseEjectionTime == nil {
			cb.BaseEjectionTime = Dur(DefaultCBBaseEjectionTime)
		}
		if cb.MaxEjectionPercent == nil {
			cb.MaxEjectionPercent = Ptr(DefaultCBMaxEjectionPct)
		}
		if fp := cb.FailurePercentage; fp != nil {
			setInt(&fp.Threshold, DefaultFPThreshold)
			setInt(&fp.MinimumHosts, DefaultFPMinimumHosts)
			setInt(&fp.RequestVolume, DefaultFPRequestVolume)
		}
		if sr := cb.SuccessRate; sr != nil {
			if sr.StdevFactor == nil {
				sr.StdevFactor = Ptr(DefaultSRStdevFactor)
			}
			setInt(&sr.MinimumHosts, DefaultSRMinimumHosts)
			setInt(&sr.RequestVolume, DefaultSRRequestVolume)
		}
	}
	if hc := p.HealthCheck; hc != nil {
		if hc.Interval == nil {
			hc.Interval = Dur(DefaultHCInterval)
		}
		if hc.Timeout == nil {
			hc.Timeout = Dur(DefaultHCTimeout)
		}
		setInt(&hc.UnhealthyThreshold, DefaultHCUnhealthy)
		setInt(&hc.HealthyThreshold, DefaultHCHealthy)
		if hc.HTTP != nil && len(hc.HTTP.ExpectedStatuses) == 0 {
			h := *hc.HTTP // the probe is shared with the policy it came from
			h.ExpectedStatuses = []int{200}
			hc.HTTP = &h
		}
	}
}

func setInt(p **int, v int) {
	if *p == nil {
		*p = Ptr(v)
	}
}
