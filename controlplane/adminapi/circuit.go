package adminapi

import (
	"context"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
)

// circuitTimeout bounds the Prometheus queries of one audit: a slow
// Prometheus makes the circuit state unknown, not the audit slow.
const circuitTimeout = 3 * time.Second

// addCircuits fills each service's circuit state: from Prometheus when one
// is configured, else unknown with the reason.
func (s *Server) addCircuits(ctx context.Context, set *policies.Set, rep *api.AuditReport) {
	names := make([]string, len(rep.Services))
	for i, sa := range rep.Services {
		names[i] = sa.Service
	}
	var states map[string]api.CircuitState
	if s.Circuits != nil {
		cctx, cancel := context.WithTimeout(ctx, circuitTimeout)
		states = s.Circuits(cctx, names)
		cancel()
	}
	for i := range rep.Services {
		sa := &rep.Services[i]
		st, ok := states[sa.Service]
		if !ok {
			st = api.CircuitState{Reason: "no --prometheus-url: the circuit state needs a Prometheus"}
		}
		eff := set.Resolve("", sa.Service, "")
		st.FallbackConfigured = eff.Spec.Fallback != nil && eff.Spec.Fallback.Service != ""
		if st.Known && st.HealthyHosts != nil {
			serving := st.FallbackConfigured && *st.HealthyHosts == 0
			st.FallbackServing = &serving
		}
		sa.Circuit = &st
	}
}
