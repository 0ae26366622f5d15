package experiments

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/prom"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/storetest"
)

// scripted answers each query with the next value of its script (the last
// one repeats); an error value is returned as the error.
type scripted struct {
	mu     sync.Mutex
	script map[string][]any
	calls  map[string]int
}

func (s *scripted) Query(_ context.Context, q string, _ time.Time) ([]prom.Sample, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vals := s.script[q]
	i := min(s.calls[q], len(vals)-1)
	s.calls[q]++
	switch v := vals[i].(type) {
	case error:
		return nil, v
	case []prom.Sample:
		return v, nil
	case float64:
		return []prom.Sample{{Value: v}}, nil
	}
	return nil, nil
}

func below(name, q string, b float64) policies.SteadyCheck {
	return policies.SteadyCheck{Name: name, Query: q, Below: &b}
}

// One check's reading: the worst series counts, no series or NaN is
// unknown, a query error is unknown with the error.
func TestReadTakesTheWorstSeries(t *testing.T) {
	q := &scripted{script: map[string][]any{
		"many": {[]prom.Sample{{Value: 0.1}, {Value: 0.7}, {Value: math.NaN()}}},
		"none": {[]prom.Sample{}},
		"nan":  {math.NaN()},
		"err":  {errors.New("prometheus unreachable: connection refused")},
	}, calls: map[string]int{}}
	ctx := context.Background()
	r := read(ctx, q, below("a", "many", 0.5))
	require.Equal(t, 0.7, *r.Value)
	require.False(t, r.OK)
	above := policies.SteadyCheck{Name: "b", Query: "many", Above: policies.Ptr(0.05)}
	r = read(ctx, q, above)
	require.Equal(t, 0.1, *r.Value)
	require.True(t, r.OK)
	require.Contains(t, read(ctx, q, below("c", "none", 1)).Error, "no series")
	require.Contains(t, read(ctx, q, below("d", "nan", 1)).Error, "NaN")
	r = read(ctx, q, below("e", "err", 1))
	require.Nil(t, r.Value)
	require.Contains(t, r.Error, "unreachable")

	ss := &policies.SteadyState{Checks: []policies.SteadyCheck{below("a", "x", 1)}}
	unknown := []policies.Reading{{Check: "a", Error: "down"}}
	require.False(t, Steady(ss, unknown))
	ss.OnUnknown = policies.OnUnknownContinue
	require.True(t, Steady(ss, unknown))
}

// The summaries keep the first, worst and last reading per check.
func TestSummariseKeepsFirstWorstLast(t *testing.T) {
	ss := &policies.SteadyState{Checks: []policies.SteadyCheck{below("a", "x", 0.5)}}
	v := func(x float64) []policies.Reading {
		return []policies.Reading{{Check: "a", Value: &x, OK: x < 0.5}}
	}
	var sums []policies.CheckSummary
	for _, x := range []float64{0.2, 0.9, 0.4} {
		sums = summarise(ss, sums, v(x))
	}
	sums = summarise(ss, sums, []policies.Reading{{Check: "a", Error: "down"}})
	require.Equal(t, 0.2, *sums[0].First.Value)
	require.Equal(t, 0.9, *sums[0].Worst.Value)
	require.Nil(t, sums[0].Last.Value)
	require.Equal(t, 1, sums[0].Failures)
	require.Equal(t, 1, sums[0].Unknown)
	require.Equal(t, "below 0.5", sums[0].Bound)
}

func runnerEnv(t *testing.T, q Querier) (*store.Store, context.Context) {
	t.Helper()
	srv := storetest.NewServer(t)
	st := store.New(storetest.NewClient(t, srv), store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	r := New(Config{Store: st, Querier: q, Tick: 20 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	return st, ctx
}

func startExp(t *testing.T, st *store.Store, name, duration string, ss *policies.SteadyState) *policies.ChaosExperiment {
	t.Helper()
	d, err := policies.ParseDuration(duration)
	require.NoError(t, err)
	e := &policies.ChaosExperiment{
		TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindExperiment},
		Metadata: policies.Metadata{Name: name},
		Spec: policies.ExperimentSpec{Target: policies.Target{Service: "payments"}, Abort: &policies.Abort{Percent: 10, HTTPStatus: 503},
			Duration: &d, SteadyState: ss},
	}
	_, err = st.StartExperiment(context.Background(), e, "test")
	require.NoError(t, err)
	return e
}

func verdictOf(t *testing.T, st *store.Store, name string) *policies.ExperimentStatus {
	t.Helper()
	var got *policies.ExperimentStatus
	require.Eventually(t, func() bool {
		hist, err := st.History(context.Background())
		if err != nil {
			return false
		}
		for _, h := range hist {
			if h.Metadata.Name == name && h.Status.Verdict != "" {
				got = h.Status
				return true
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond)
	return got
}

// onUnknown: continue skips the evaluations Prometheus cannot answer and
// says so; the run ends held on the evaluations that could be read.
func TestOnUnknownContinueSkipsAndSaysWhy(t *testing.T) {
	q := &scripted{script: map[string][]any{"q": {errors.New("prometheus unreachable"), errors.New("prometheus unreachable"), 0.1}}, calls: map[string]int{}}
	st, _ := runnerEnv(t, q)
	ss := &policies.SteadyState{Interval: policies.Dur(time.Second), OnUnknown: policies.OnUnknownContinue, Checks: []policies.SteadyCheck{below("errors", "q", 0.5)}}
	startExp(t, st, "blind", "4s", ss)
	require.Eventually(t, func() bool {
		r, err := st.Get(context.Background(), policies.KindExperiment, "blind")
		return err == nil && r.(*policies.ChaosExperiment).Status.Evaluations >= 1 &&
			r.(*policies.ChaosExperiment).Status.Reason != ""
	}, 10*time.Second, 20*time.Millisecond)
	r, err := st.Get(context.Background(), policies.KindExperiment, "blind")
	require.NoError(t, err)
	require.Contains(t, r.(*policies.ChaosExperiment).Status.Reason, "onUnknown: continue; this evaluation is skipped")
	got := verdictOf(t, st, "blind")
	require.Equal(t, policies.VerdictHeld, got.Verdict, got.Reason)
	require.Equal(t, 2, got.Checks[0].Unknown)
	require.Equal(t, policies.PhaseEnded, got.Phase)

	// A check that was never read gives no verdict of held.
	q.mu.Lock()
	q.script["never"] = []any{errors.New("prometheus unreachable")}
	q.mu.Unlock()
	ss = &policies.SteadyState{Interval: policies.Dur(time.Second), OnUnknown: policies.OnUnknownContinue, Checks: []policies.SteadyCheck{below("errors", "never", 0.5)}}
	startExp(t, st, "never-read", "2s", ss)
	got = verdictOf(t, st, "never-read")
	require.Equal(t, policies.VerdictFailed, got.Verdict)
	require.Contains(t, got.Reason, "check errors was never read")
}

// A run stopped by someone before its end is aborted, naming who.
func TestVerdictOfAStoppedRun(t *testing.T) {
	q := &scripted{script: map[string][]any{"q": {0.1}}, calls: map[string]int{}}
	st, ctx := runnerEnv(t, q)
	ss := &policies.SteadyState{Interval: policies.Dur(time.Second), Checks: []policies.SteadyCheck{below("errors", "q", 0.5)}}
	startExp(t, st, "stopped", "1m", ss)
	require.Eventually(t, func() bool {
		r, err := st.Get(ctx, policies.KindExperiment, "stopped")
		return err == nil && r.(*policies.ChaosExperiment).Status.Evaluations >= 1
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, st.StopExperiment(ctx, "stopped", "alice"))
	got := verdictOf(t, st, "stopped")
	require.Equal(t, policies.VerdictAborted, got.Verdict)
	require.Equal(t, "stopped by alice before its end", got.Reason)

}
