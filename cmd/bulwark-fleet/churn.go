package main

import (
	"context"
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
