package experiments

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/bulwarkmesh/bulwark/policies"
)

// Store is what the runner reads and writes; *store.Store is one.
type Store interface {
	List(ctx context.Context, kind string) ([]policies.Resource, int64, error)
	StopExperiment(ctx context.Context, name, who string) error
	History(ctx context.Context) ([]*policies.ChaosExperiment, error)
	PutSteadyState(ctx context.Context, name, startedAt string, st *policies.SteadyStateStatus) error
	SteadyState(ctx context.Context, name, startedAt string) (*policies.SteadyStateStatus, error)
}

// StoppedBy is the status.stoppedBy of an experiment its hypothesis stopped.
const StoppedBy = "steady-state"

// DefaultTick is how often the runner looks for running experiments and
// evaluations that are due.
const DefaultTick = 250 * time.Millisecond

// storeTimeout bounds the runner's store work per step.
const storeTimeout = 5 * time.Second

// Config of a Runner.
type Config struct {
	Store   Store
	Querier Querier
	Log     *slog.Logger
	// Tick is how often it looks for work; 0 is DefaultTick.
	Tick time.Duration
	// Evaluated, when set, is called after each evaluation (metrics):
	// whether a check failed, one could not be read, and the experiment
	// was stopped.
	Evaluated func(failed, unknown, aborted bool)
}

// Runner evaluates the steady state of every running experiment that has
// one, on its own loop.
type Runner struct {
	cfg  Config
	mu   sync.Mutex
	runs map[string]*run // by name
}

// run is one experiment run the runner follows.
type run struct {
	exp         *policies.ChaosExperiment
	next        time.Time
	consecutive int
	status      policies.SteadyStateStatus
	done        bool
}

// New returns a runner; Run starts it.
func New(cfg Config) *Runner {
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Runner{cfg: cfg, runs: map[string]*run{}}
}

// PreStart evaluates an experiment's checks before it starts.
func (r *Runner) PreStart(ctx context.Context, ss *policies.SteadyState) ([]policies.Reading, bool) {
	rs := Evaluate(ctx, r.cfg.Querier, ss, min(ss.SteadyInterval(), 10*time.Second))
	return rs, Steady(ss, rs)
}

// Run follows running experiments until ctx ends.
func (r *Runner) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Tick)
	defer t.Stop()
	for {
		r.step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// step lists the running experiments, finishes the runs that ended and
// evaluates the ones that are due.
func (r *Runner) step(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	items, _, err := r.cfg.Store.List(sctx, policies.KindExperiment)
	cancel()
	if err != nil {
		r.cfg.Log.Warn("steady state: cannot list experiments", "error", err)
		return
	}
	now := time.Now()
	running := map[string]*policies.ChaosExperiment{}
	for _, it := range items {
		e := it.(*policies.ChaosExperiment)
		if e.Spec.SteadyState != nil && e.Status != nil && e.Status.StartedAt != "" {
			running[e.Metadata.Name] = e
		}
	}
	r.mu.Lock()
	var ended []*run
	for name, ru := range r.runs {
		e := running[name]
		if e == nil || e.Status.StartedAt != ru.exp.Status.StartedAt {
			delete(r.runs, name)
			if !ru.done {
				ended = append(ended, ru)
			}
		}
	}
	var due []*run
	for name, e := range running {
		ru := r.runs[name]
		if ru == nil {
			ru = &run{exp: e, next: startOf(e).Add(e.Spec.SteadyState.SteadyInterval())}
			r.runs[name] = ru
			if rec, err := r.load(ctx, e); err == nil && rec != nil {
				ru.status = *rec
				ru.done = rec.Phase == policies.PhaseAborted || rec.Phase == policies.PhaseEnded
			}
		}
		if !ru.done && !now.Before(ru.next) {
			due = append(due, ru)
		}
	}
	r.mu.Unlock()
	for _, ru := range ended {
		r.finish(ctx, ru)
	}
	sort.Slice(due, func(i, j int) bool { return due[i].exp.Metadata.Name < due[j].exp.Metadata.Name })
	for _, ru := range due {
		r.evaluate(ctx, ru)
	}
}

func startOf(e *policies.ChaosExperiment) time.Time {
	t, err := time.Parse(time.RFC3339Nano, e.Status.StartedAt)
	if err != nil {
		return time.Now()
	}
	return t
}

func (r *Runner) load(ctx context.Context, e *policies.ChaosExperiment) (*policies.SteadyStateStatus, error) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return r.cfg.Store.SteadyState(sctx, e.Metadata.Name, e.Status.StartedAt)
}

// evaluate reads the checks of one run, records the readings and stops the
// experiment after failAfter consecutive failures.
func (r *Runner) evaluate(ctx context.Context, ru *run) {
	ss := ru.exp.Spec.SteadyState
	interval := ss.SteadyInterval()
	rs := Evaluate(ctx, r.cfg.Querier, ss, interval)
	ru.next = time.Now().Add(interval)
	// Keep what the API recorded before the start (pre-start readings,
	// force) even when it was written after this run was first seen.
	if rec, err := r.load(ctx, ru.exp); err == nil && rec != nil {
		ru.status.PreStart, ru.status.Forced = rec.PreStart, rec.Forced
	}
	st := &ru.status
	st.Phase = policies.PhaseRunning
	st.Evaluations++
	st.Checks = summarise(ss, st.Checks, rs)
	failed, unknown := outcome(rs)
	st.Reason = ""
	switch {
	case failed != nil:
		ru.consecutive++
		st.Reason = fmt.Sprintf("check %s read %s, not %s (%d of %d consecutive failed evaluations)",
			failed.Check, failed, boundOf(ss, failed.Check), ru.consecutive, ss.SteadyFailAfter())
	case unknown != nil && ss.SteadyOnUnknown() == policies.OnUnknownAbort:
		ru.consecutive++
		st.Reason = fmt.Sprintf("check %s could not be read: %s (onUnknown: abort; %d of %d consecutive failed evaluations)",
			unknown.Check, unknown.Error, ru.consecutive, ss.SteadyFailAfter())
	case unknown != nil:
		st.Reason = fmt.Sprintf("check %s could not be read: %s (onUnknown: continue; this evaluation is skipped)", unknown.Check, unknown.Error)
	default:
		ru.consecutive = 0
	}
	aborted := ru.consecutive >= ss.SteadyFailAfter()
	if r.cfg.Evaluated != nil {
		r.cfg.Evaluated(failed != nil, unknown != nil, aborted)
	}
	if aborted {
		st.Phase, st.Verdict = policies.PhaseAborted, policies.VerdictAborted
		st.Reason = "stopped: " + st.Reason
		ru.done = true
		sctx, cancel := context.WithTimeout(ctx, storeTimeout)
		err := r.cfg.Store.StopExperiment(sctx, ru.exp.Metadata.Name, StoppedBy)
		cancel()
		if err != nil {
			r.cfg.Log.Error("steady state: could not stop an experiment that broke its hypothesis", "experiment", ru.exp.Metadata.Name, "error", err)
			ru.done = false // try again next tick
		} else {
			r.cfg.Log.Warn("experiment stopped: its steady-state hypothesis failed", "experiment", ru.exp.Metadata.Name, "reason", st.Reason)
		}
	}
	r.record(ctx, ru)
}

func boundOf(ss *policies.SteadyState, check string) string {
	for _, c := range ss.Checks {
		if c.Name == check {
			return c.Bound()
		}
	}
	return ""
}

// finish gives the verdict of a run that ended without its hypothesis
// stopping it: held when no evaluation failed, failed otherwise, aborted
// when someone stopped it before its end.
func (r *Runner) finish(ctx context.Context, ru *run) {
	st := &ru.status
	if rec, err := r.load(ctx, ru.exp); err == nil && rec != nil {
		st.PreStart, st.Forced = rec.PreStart, rec.Forced
	}
	st.Phase = policies.PhaseEnded
	failures, neverRead := 0, ""
	for _, c := range st.Checks {
		failures += c.Failures
		if st.Evaluations > 0 && c.Unknown == st.Evaluations && neverRead == "" {
			neverRead = c.Name
		}
	}
	stoppedBy := r.stoppedBy(ctx, ru.exp)
	switch {
	case stoppedBy != "":
		st.Verdict = policies.VerdictAborted
		st.Reason = "stopped by " + stoppedBy + " before its end"
	case st.Evaluations == 0:
		st.Verdict = policies.VerdictFailed
		st.Reason = "ended before its first evaluation"
	case neverRead != "":
		st.Verdict = policies.VerdictFailed
		st.Reason = fmt.Sprintf("check %s was never read in %d evaluations (onUnknown: continue)", neverRead, st.Evaluations)
	case failures > 0:
		st.Verdict = policies.VerdictFailed
		st.Reason = fmt.Sprintf("%d failed readings in %d evaluations", failures, st.Evaluations)
	default:
		st.Verdict = policies.VerdictHeld
		st.Reason = ""
	}
	r.cfg.Log.Info("experiment ended", "experiment", ru.exp.Metadata.Name, "verdict", st.Verdict, "reason", st.Reason)
	r.record(ctx, ru)
}

// stoppedBy returns who stopped a run early, from its history record.
func (r *Runner) stoppedBy(ctx context.Context, e *policies.ChaosExperiment) string {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	hist, err := r.cfg.Store.History(sctx)
	if err != nil {
		return ""
	}
	for _, h := range hist {
		if h.Metadata.Name == e.Metadata.Name && h.Status.StartedAt == e.Status.StartedAt && h.Status.Outcome == "stopped" {
			return h.Status.StoppedBy
		}
	}
	return ""
}

func (r *Runner) record(ctx context.Context, ru *run) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	st := ru.status
	if err := r.cfg.Store.PutSteadyState(sctx, ru.exp.Metadata.Name, ru.exp.Status.StartedAt, &st); err != nil {
		r.cfg.Log.Warn("steady state: cannot record readings", "experiment", ru.exp.Metadata.Name, "error", err)
	}
}
