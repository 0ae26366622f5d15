package adminapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// SteadyState evaluates an experiment's hypothesis before it starts;
// *experiments.Runner is one. nil without --prometheus-url.
type SteadyState interface {
	PreStart(ctx context.Context, ss *policies.SteadyState) ([]policies.Reading, bool)
}

// preStart is the outcome of the pre-start gate, recorded once the
// experiment started.
type preStart struct {
	name     string
	readings []policies.Reading
	forced   bool
}

// steadyGate evaluates the steady state of an experiment about to start:
// it refuses (409 with the readings) when a check fails, unless ?force=true,
// and refuses a steadyState on a server without Prometheus. It returns nil
// when there is nothing to record (no steadyState, or the experiment runs
// already and the write will not start it).
func (s *Server) steadyGate(r *http.Request, res policies.Resource) (*preStart, error) {
	e, ok := res.(*policies.ChaosExperiment)
	if !ok || e.Spec.SteadyState == nil {
		return nil, nil
	}
	force, err := boolParam(r, "force")
	if err != nil {
		return nil, err
	}
	// Invalid input is the applier's to refuse, with every violation.
	if vs := policies.Validate(e, policies.ValidateOptions{MaxExperimentDuration: policies.MaxDuration, MaxFaultPercent: 100}); len(vs) > 0 {
		return nil, nil
	}
	ctx, cancel := s.storeCtx(r)
	_, err = s.Store.Get(ctx, policies.KindExperiment, e.Metadata.Name)
	cancel()
	switch {
	case err == nil:
		return nil, nil // running: the write does not start it again
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	if s.SteadyState == nil {
		return nil, api.Invalid("spec.steadyState needs a Prometheus: this server runs without --prometheus-url",
			api.Violation{Field: "spec.steadyState", Message: "cannot be evaluated: the server has no --prometheus-url"})
	}
	rs, steady := s.SteadyState.PreStart(r.Context(), e.Spec.SteadyState)
	if !steady && !force {
		p := api.NewProblem(http.StatusConflict, api.ProblemNotSteady, fmt.Sprintf(
			"experiment %s not started: the system is not steady (%s); ?force=true starts it anyway", e.Metadata.Name, describe(rs)))
		p.Readings = rs
		return nil, p
	}
	return &preStart{name: e.Metadata.Name, readings: rs, forced: !steady}, nil
}

// describe renders readings for a message: "errors=0.3 (fails), rps=12".
func describe(rs []policies.Reading) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.Check + "=" + r.String()
		if r.Value != nil && !r.OK {
			parts[i] += " (fails)"
		}
	}
	return strings.Join(parts, ", ")
}

// recordPreStart keeps the pre-start readings with the run that started.
func (s *Server) recordPreStart(ctx context.Context, p *preStart, started policies.Resource) {
	e, ok := started.(*policies.ChaosExperiment)
	if p == nil || !ok || e.Status == nil {
		return
	}
	st := &policies.SteadyStateStatus{Phase: policies.PhaseRunning, Forced: p.forced, PreStart: p.readings}
	if p.forced {
		st.Reason = "started with force although not steady: " + describe(p.readings)
	}
	if err := s.Store.PutSteadyState(ctx, e.Metadata.Name, e.Status.StartedAt, st); err != nil {
		s.Logger.Warn("could not record the pre-start readings", "experiment", e.Metadata.Name, "error", err)
	}
	if p.forced {
		s.Logger.Warn("experiment started with force although not steady", "experiment", e.Metadata.Name, "readings", describe(p.readings))
	}
}

// recordPreStarts records the pre-start readings of the experiments an
// apply started.
func (s *Server) recordPreStarts(ctx context.Context, gates []*preStart, rs []policies.Resource) {
	for _, g := range gates {
		for _, res := range rs {
			if e, ok := res.(*policies.ChaosExperiment); ok && e.Metadata.Name == g.name {
				s.recordPreStart(ctx, g, e)
			}
		}
	}
}
