package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// churnReport is a steady stream of policy writes, then quiet.
type churnReport struct {
	Writes int `json:"writes"`
	Failed int `json:"failedWrites"`
	// Skipped counts writes not issued because every writer was busy.
	Skipped       int     `json:"skippedWrites"`
	Writers       int     `json:"writers"`
	Seconds       float64 `json:"seconds"`
	RatePerSecond float64 `json:"achievedRatePerSecond"`
	Targets       int     `json:"targets"`
	// CPUCores is the control plane's CPU time over wall time during the churn.
	CPUCores float64 `json:"cpuCores"`
	// PushesPerProxyPerSecond shows coalescing: without it, every write
	// would push to every proxy.
	PushesPerProxyPerSecond float64 `json:"pushesPerProxyPerSecond"`
	Pushes                  int64   `json:"pushes"`
	Builds                  int64   `json:"builds"`
	SnapshotsChanged        int64   `json:"snapshotsChanged"`
	// ControlPlaneConvergence is bulwark_convergence_seconds during the
	// churn: from a revision being observed to a proxy ACKing it.
	ControlPlaneConvergence struct {
		Count float64 `json:"count"`
		P50Ms float64 `json:"p50Ms"`
		P99Ms float64 `json:"p99Ms"`
	} `json:"controlPlaneConvergence"`
	// Final is a measured write after the churn: everything converges.
	Final    writeReport `json:"final"`
	Baseline cpSample    `json:"baseline"`
	Peak     cpSample    `json:"peak"`
	After    cpSample    `json:"afterQuiet"`
	// HeapRatio is the heap in use after the quiet period over the
	// baseline; LiveHeapRatio the same for the live heap (objects only).
	HeapRatio       float64 `json:"heapRatio"`
	LiveHeapRatio   float64 `json:"liveHeapRatio"`
	GoroutinesDelta int64   `json:"goroutinesDelta"`
}

func (s *session) churn(ctx context.Context) error {
	targets := s.services
	if s.opt.churnTargets > 0 && s.opt.churnTargets < len(targets) {
		targets = targets[:s.opt.churnTargets]
	}
	if !slices.Contains(targets, s.target) {
		targets = append([]string{s.target}, targets...)
	}
	flip, err := newFlipper(ctx, s.w, targets)
	if err != nil {
		return err
	}
	s.flip = flip
	rep := &churnReport{Targets: len(targets)}
	rep.Baseline, _ = memoryAt(ctx, s.cp, s.http)
	s0, err := sample(ctx, s.http, s.cp.adminURL())
	if err != nil {
		return err
	}
	// Writers work in parallel, as many operators and pipelines would; each
	// write gives its policy a request timeout no earlier write gave it, so
	// no build repeats an earlier content.
	rep.Writers = s.opt.writers
	jobs := make(chan int)
	var done, failed atomic.Int64
	var wg sync.WaitGroup
	for range s.opt.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				d := 2*time.Second + time.Duration(n%60000)*time.Millisecond
				if _, err := flip.set(ctx, targets[n%len(targets)], d); err != nil {
					failed.Add(1)
				}
				done.Add(1)
			}
		}()
	}
	interval := time.Duration(float64(time.Second) / s.opt.rate)
	tick := time.NewTicker(interval)
	start := time.Now()
	nextSample := start
	issued := 0
	for time.Since(start) < s.opt.duration && ctx.Err() == nil {
		<-tick.C
		// Catch up on ticks missed while sampling: the rate is per second
		// of wall time.
		for due := int(time.Since(start).Seconds() * s.opt.rate); issued+rep.Skipped < due; {
			select {
			case jobs <- issued:
				issued++
			default:
				rep.Skipped++
			}
		}
		if time.Now().After(nextSample) {
			nextSample = time.Now().Add(time.Second)
			if cur, err := sample(ctx, s.http, s.cp.adminURL()); err == nil {
				rep.Peak.RSSBytes = max(rep.Peak.RSSBytes, cur.RSSBytes)
				rep.Peak.HeapInuseBytes = max(rep.Peak.HeapInuseBytes, cur.HeapInuseBytes)
				rep.Peak.Goroutines = max(rep.Peak.Goroutines, cur.Goroutines)
			}
		}
	}
	close(jobs)
	wg.Wait()
	rep.Writes, rep.Failed = int(done.Load()), int(failed.Load())
	tick.Stop()
	elapsed := time.Since(start)
	s1, err := sample(ctx, s.http, s.cp.adminURL())
	if err != nil {
		return err
	}
	rep.Seconds = secs(elapsed)
	rep.RatePerSecond = round2(float64(rep.Writes) / elapsed.Seconds())
	rep.CPUCores = round2((s1.CPUSeconds - s0.CPUSeconds) / elapsed.Seconds())
	rep.Pushes = s1.Pushes - s0.Pushes
	rep.Builds = s1.Builds - s0.Builds
	rep.SnapshotsChanged = s1.Snapshots - s0.Snapshots
	rep.PushesPerProxyPerSecond = round2(float64(rep.Pushes) / float64(len(s.fl.all())) / elapsed.Seconds())
	p50, n := histogramQuantile(0.5, s0.convergence, s1.convergence)
	p99, _ := histogramQuantile(0.99, s0.convergence, s1.convergence)
	rep.ControlPlaneConvergence.Count, rep.ControlPlaneConvergence.P50Ms, rep.ControlPlaneConvergence.P99Ms = n, round2(p50*1000), round2(p99*1000)

	// One more write, measured, once the churn is over.
	time.Sleep(s.opt.settle)
	if rep.Final, _, err = s.measureWrite(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(s.opt.quiet):
	}
	rep.After, _ = memoryAt(ctx, s.cp, s.http)
	if s.opt.profileDir != "" {
		if err := s.profile(ctx, "heap", "heap-after-quiet.pb.gz"); err != nil {
			return err
		}
	}
	if rep.Baseline.HeapInuseBytes > 0 {
		rep.HeapRatio = round2(float64(rep.After.HeapInuseBytes) / float64(rep.Baseline.HeapInuseBytes))
	}
	if rep.Baseline.HeapAllocBytes > 0 {
		rep.LiveHeapRatio = round2(float64(rep.After.HeapAllocBytes) / float64(rep.Baseline.HeapAllocBytes))
	}
	rep.GoroutinesDelta = rep.After.Goroutines - rep.Baseline.Goroutines
	s.rep.Churn = rep
	return nil
}

// coldReport is a restart with the store already full.
type coldReport struct {
	Services int `json:"services"`
	// ReadySeconds: from starting the control plane to /health/ready.
	ReadySeconds float64 `json:"readySeconds"`
	// WarmSeconds: from starting the control plane until every stream of
	// the fleet (connected after ready) is warm; 0 without a fleet.
	WarmSeconds float64  `json:"warmSeconds,omitempty"`
	After       cpSample `json:"after"`
}

func secs(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// machine describes where the numbers were measured.
type machine struct {
	CPUs    int    `json:"cpus"`
	Model   string `json:"cpuModel,omitempty"`
	MemGB   int    `json:"memoryGB,omitempty"`
	Go      string `json:"go"`
	Kernel  string `json:"kernel,omitempty"`
	Started string `json:"started"`
	// LoadAvg is the machine's load average when the run started: the
	// machine may be shared.
	LoadAvg string `json:"loadAverage,omitempty"`
}

// loadAverage is the machine's 1-minute load average (0 where unknown).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

// selfCPUSeconds is the CPU (user and system) this process used so far.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func readMachine() machine {
	m := machine{Started: time.Now().UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		m.MemGB = int(math.Round(float64(kb) / (1 << 20)))
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// profile saves one of the control plane's pprof profiles in --profile-dir.
func (s *session) profile(ctx context.Context, what, file string) error {
	if err := os.MkdirAll(s.opt.profileDir, 0o755); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cp.adminURL()+"/debug/pprof/"+what, nil)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: time.Duration(s.opt.profileSeconds+30) * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /debug/pprof/%s: HTTP %d (start the control plane with --enable-pprof)", what, resp.StatusCode)
	}
	f, err := os.Create(filepath.Join(s.opt.profileDir, file))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
