package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// writeReport is one measured write.
type writeReport struct {
	Revision int64   `json:"revision"`
	WriteMs  float64 `json:"writeMs"`
	latencies
	Converged int      `json:"converged"`
	Total     int      `json:"total"`
	Changed   []string `json:"changedTypes"`
	Groups    int      `json:"groupsChanged"`
	TimedOut  bool     `json:"timedOut,omitempty"`
	// WarmedByTimeout (warming client) counts the clusters and listeners
	// of the fleet that became active only because initial_fetch_timeout
	// fired during the measurement; NACKs the NACKs sent. Both must be 0.
	WarmedByTimeout int   `json:"warmedByTimeout"`
	NACKs           int64 `json:"nacks"`
	// PerGroup (with --per-group) shows the groups' convergence, slowest last.
	PerGroup []groupLatency `json:"perGroup,omitempty"`
	// BuildMs is the control plane's mean rebuild time during the
	// measurement (bulwark_build_duration_seconds), when it reports it.
	BuildMs float64 `json:"buildMs,omitempty"`
	// ConfirmedByControlPlane counts the proxies that /v1/proxies reports
	// converged on a revision at least the write's.
	ConfirmedByControlPlane *int `json:"confirmedByControlPlane,omitempty"`
	// ConfirmedAfterMs, when the control plane's first answer did not have
	// every proxy, is how much longer it took to report them all (or,
	// with fewer confirmed, how long the simulator asked: confirmWait).
	ConfirmedAfterMs float64 `json:"confirmedAfterMs,omitempty"`
	// LoadAvg is the machine's 1-minute load average just before the
	// write; ControlPlaneCPUSeconds and SimulatorCPUSeconds the CPU each
	// process used from the write until the measurement ended (the control
	// plane's from its process_cpu_seconds_total, when it reports it). On
	// a shared machine they tell who had the cores.
	LoadAvg                float64 `json:"loadAverage,omitempty"`
	ControlPlaneCPUSeconds float64 `json:"controlPlaneCPUSeconds,omitempty"`
	SimulatorCPUSeconds    float64 `json:"simulatorCPUSeconds,omitempty"`
}

// groupLatency is one group's convergence.
type groupLatency struct {
	Group string `json:"group"`
	latencies
}

// session is one run: the control plane, the writer and the fleet.
type session struct {
	opt      options
	cp       controlPlane
	w        *writer
	fl       *fleet
	http     *http.Client
	flip     *flipper
	change   []byte // --change-file content
	target   string
	sources  []string
	services []string // every service of the mesh, sorted
	rep      *report
	// recvHook is handed to the fleet (tests).
	recvHook func(p *proxy, msg any)
	progress func(format string, a ...any)
}

// change writes the change under measurement and returns its revision.
func (s *session) write(ctx context.Context, target string) (int64, error) {
	if s.change != nil {
		return changeFile(ctx, s.w, s.change)
	}
	if s.opt.change == changeCluster {
		return s.flip.flipCluster(ctx, target)
	}
	return s.flip.flip(ctx, target)
}

// measureWrite writes the change and waits for the fleet to converge.
func (s *session) measureWrite(ctx context.Context) (writeReport, []time.Duration, error) {
	load := loadAverage()
	before, _ := sample(ctx, s.http, s.cp.adminURL())
	simBefore := selfCPUSeconds()
	s.fl.mark()
	nacks := s.fl.nacks.Load()
	t0 := time.Now()
	rev, err := s.write(ctx, s.target)
	if err != nil {
		return writeReport{}, nil, err
	}
	wr := writeReport{Revision: rev, WriteMs: ms(time.Since(t0))}
	s.progress("write: revision %d written in %.0f ms; waiting for the streams to converge", rev, wr.WriteMs)
	o, ok := s.fl.waitConverged(ctx, t0, s.opt.settle, s.opt.timeout)
	wr.latencies = summarize(o.times)
	wr.Converged, wr.Total, wr.Changed, wr.Groups, wr.TimedOut = o.converged, o.total, o.changed, o.groups, !ok
	wr.WarmedByTimeout, wr.NACKs = s.fl.timeoutsSinceMark(), s.fl.nacks.Load()-nacks
	wr.LoadAvg, wr.SimulatorCPUSeconds = load, round2(selfCPUSeconds()-simBefore)
	if after, err := sample(ctx, s.http, s.cp.adminURL()); err == nil {
		if after.Builds > before.Builds {
			wr.BuildMs = round2((after.BuildSeconds - before.BuildSeconds) * 1000 / float64(after.Builds-before.Builds))
		}
		if after.CPUSeconds > before.CPUSeconds && !s.cp.shared() {
			wr.ControlPlaneCPUSeconds = round2(after.CPUSeconds - before.CPUSeconds)
		}
	}
	if s.opt.perGroup {
		for g, ts := range o.byGroup {
			wr.PerGroup = append(wr.PerGroup, groupLatency{Group: g, latencies: summarize(ts)})
		}
		slices.SortFunc(wr.PerGroup, func(a, b groupLatency) int { return cmp.Compare(a.MaxMs, b.MaxMs) })
	}
	if n, after, err := s.confirmWithin(ctx, rev, o.total, confirmWait); err == nil {
		wr.ConfirmedByControlPlane = &n
		wr.ConfirmedAfterMs = ms(after)
	}
	return wr, o.times, nil
}

// confirmWait is how long confirmWithin keeps asking the control plane.
const confirmWait = 10 * time.Second

// confirmWithin asks the control plane, every half second for at most
// wait, until it reports want proxies converged on revision rev or later:
// it returns the last count and how long after the first ask it was
// reached (0 when the first answer had them all).
func (s *session) confirmWithin(ctx context.Context, rev int64, want int, wait time.Duration) (int, time.Duration, error) {
	start := time.Now()
	for first := true; ; first = false {
		n, err := s.confirm(ctx, rev)
		if err != nil {
			return n, 0, err
		}
		if n >= want && first {
			return n, 0, nil
		}
		if n >= want || time.Since(start) >= wait {
			return n, time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return n, time.Since(start), ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// confirm counts this fleet's proxies that the control plane reports
// converged on revision rev or later.
func (s *session) confirm(ctx context.Context, rev int64) (int, error) {
	if rev == 0 {
		return 0, fmt.Errorf("revision unknown")
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.cp.adminURL()+"/v1/proxies", nil)
	if s.opt.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.opt.token)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /v1/proxies: HTTP %d", resp.StatusCode)
	}
	var body struct {
		Items []struct {
			ID        string `json:"id"`
			Converged bool   `json:"converged"`
			Revision  int64  `json:"revision"`
		} `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	n := 0
	for _, p := range body.Items {
		if strings.HasPrefix(p.ID, s.fl.opt.nodePrefix+"-") && p.Converged && p.Revision >= rev {
			n++
		}
	}
	return n, nil
}

// converge measures --writes changes, one after the other.
func (s *session) converge(ctx context.Context) error {
	if s.opt.abuseTypes > 0 || s.opt.abuseClusters > 0 {
		a, err := startAbuse(ctx, s.cp.xdsAddr(), s.opt.abuseTypes, s.opt.abuseClusters, s.opt.abuseStreams, s.opt.abuseFor)
		if err != nil {
			return err
		}
		defer func() {
			r := a.stop()
			s.rep.Abuse = r
			s.progress("abuse: done after %.1f s: %d/%d garbage types and %d/%d clusters sent over %d streams, %d responses, stream errors %v",
				r.Seconds, r.TypesSent, r.Types, r.ClustersSent, r.Clusters, r.Streams, r.Responses, r.Errors)
		}()
		// Let the abuse ramp up before the first write (2 s at most).
		want := int64(min(1000, s.opt.abuseTypes+s.opt.abuseClusters))
		for i := 0; i < 100 && a.sent() < want; i++ {
			time.Sleep(20 * time.Millisecond)
		}
		s.progress("abuse: %d abusive streams at once, %d requests sent; measuring", s.opt.abuseStreams, a.sent())
	}
	var all []time.Duration
	for i := 0; i < s.opt.writes; i++ {
		if i > 0 {
			time.Sleep(s.opt.gap)
		}
		wr, times, err := s.measureWrite(ctx)
		if err != nil {
			return err
		}
		s.rep.Writes = append(s.rep.Writes, wr)
		all = append(all, times...)
		s.rep.WarmedByTimeout += wr.WarmedByTimeout
		s.rep.NACKs += wr.NACKs
		confirmed := "-"
		if c := wr.ConfirmedByControlPlane; c != nil {
			confirmed = fmt.Sprintf("%d (%.0f ms later)", *c, wr.ConfirmedAfterMs)
		}
		s.progress("write %d/%d (%s change, revision %d): %d/%d converged, p50 %.0f ms, p99 %.0f ms, max %.0f ms; changed %v; warmed by timeout %d, NACKs %d; confirmed by the control plane %s; load %.2f, CPU: control plane %.1f s, simulator %.1f s",
			i+1, s.opt.writes, s.changeName(), wr.Revision, wr.Converged, wr.Total, wr.P50Ms, wr.P99Ms, wr.MaxMs, wr.Changed, wr.WarmedByTimeout, wr.NACKs,
			confirmed, wr.LoadAvg, wr.ControlPlaneCPUSeconds, wr.SimulatorCPUSeconds)
	}
	c := summarize(all)
	s.rep.Convergence = &c
	return nil
}

func (s *session) changeName() string {
	if s.change != nil {
		return "--change-file"
	}
	return s.opt.change
}

// stormReport is a restart of the control plane under a connected fleet.
type stormReport struct {
	// RestartSeconds: from the kill until the new control plane is ready.
	RestartSeconds float64 `json:"restartSeconds"`
	// AllAckedSeconds: from the kill until every proxy has ACKed every
	// type again on a new stream.
	AllAckedSeconds float64 `json:"allAckedSeconds"`
	Reacked         int     `json:"reacked"`
	Total           int     `json:"total"`
	// ReackedMs: per proxy, from the kill to its new stream being warm.
	ReackedMs latencies `json:"reackedMs"`
	Before    cpSample  `json:"before"`
	Peak      cpSample  `json:"peak"`
	After     cpSample  `json:"after"`
}

func (s *session) storm(ctx context.Context) error {
	ps := s.fl.all()
	gens := make([]int, len(ps))
	for i, p := range ps {
		p.mu.Lock()
		gens[i] = p.gen
		p.mu.Unlock()
	}
	before, _ := memoryAt(ctx, s.cp, s.http)
	t0 := time.Now()
	if _, err := s.cp.restart(ctx, false); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	rep := &stormReport{RestartSeconds: secs(time.Since(t0)), Total: len(ps), Before: before}
	deadline := t0.Add(s.opt.timeout)
	var times []time.Duration
	for {
		if cur, err := sample(ctx, s.http, s.cp.adminURL()); err == nil {
			rep.Peak.RSSBytes = max(rep.Peak.RSSBytes, cur.RSSBytes)
			rep.Peak.HeapInuseBytes = max(rep.Peak.HeapInuseBytes, cur.HeapInuseBytes)
			rep.Peak.Goroutines = max(rep.Peak.Goroutines, cur.Goroutines)
		}
		times = times[:0]
		for i, p := range ps {
			p.mu.Lock()
			if p.gen > gens[i] && p.isWarm {
				times = append(times, p.warmAt.Sub(t0))
			}
			p.mu.Unlock()
		}
		if len(times) == len(ps) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	rep.Reacked = len(times)
	rep.ReackedMs = summarize(times)
	if len(times) > 0 {
		rep.AllAckedSeconds = secs(slices.Max(times))
	}
	rep.After, _ = memoryAt(ctx, s.cp, s.http)
	s.rep.Storm = rep
	if rep.Reacked < rep.Total {
		for i, p := range ps {
			p.mu.Lock()
			stuck := p.gen <= gens[i] || !p.isWarm
			p.mu.Unlock()
			if stuck {
				return fmt.Errorf("only %d of %d proxies ACKed again within %s; for example %s", rep.Reacked, rep.Total, s.opt.timeout, p.describe())
			}
		}
	}
	return nil
}
