package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// cpSample is the control plane's state read from its /metrics.
type cpSample struct {
	At             time.Time `json:"-"`
	RSSBytes       int64     `json:"rssBytes"`
	HeapInuseBytes int64     `json:"heapInuseBytes"`
	// HeapAllocBytes is the live heap (objects), without the free space
	// of partly used spans that heapInuseBytes counts.
	HeapAllocBytes int64   `json:"heapAllocBytes"`
	Goroutines     int64   `json:"goroutines"`
	CPUSeconds     float64 `json:"cpuSeconds"`
	Pushes         int64   `json:"pushes"`
	Snapshots      int64   `json:"snapshotsChanged"`
	Builds         int64   `json:"builds"`
	BuildSeconds   float64 `json:"-"`
	Connected      int64   `json:"connectedProxies"`
	GCForced       bool    `json:"gcForced"`
	// VmRSSBytes is VmRSS of the control plane's process read from
	// /proc/<pid>/status (a child process or this one), 0 when it runs
	// elsewhere.
	VmRSSBytes int64 `json:"vmRSSBytes,omitempty"`
	// The simulator's own process after a collection: its heap in use and
	// VmRSS (the same process as the control plane with --embedded).
	SimHeapInuseBytes int64 `json:"simulatorHeapInuseBytes,omitempty"`
	SimVmRSSBytes     int64 `json:"simulatorVmRSSBytes,omitempty"`
	// convergence is the control plane's bulwark_convergence_seconds
	// histogram: upper bound → cumulative count.
	convergence map[float64]float64
}

// sample scrapes /metrics.
func sample(ctx context.Context, c *http.Client, admin string) (cpSample, error) {
	s := cpSample{At: time.Now(), convergence: map[float64]float64{}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/metrics", nil)
	if err != nil {
		return s, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	err = scrapeLines(resp.Body, func(name, labels string, v float64) {
		switch name {
		case "process_resident_memory_bytes":
			s.RSSBytes = int64(v)
		case "go_memstats_heap_inuse_bytes":
			s.HeapInuseBytes = int64(v)
		case "go_memstats_heap_alloc_bytes":
			s.HeapAllocBytes = int64(v)
		case "go_goroutines":
			s.Goroutines = int64(v)
		case "process_cpu_seconds_total":
			s.CPUSeconds = v
		case "bulwark_xds_pushes_total":
			s.Pushes += int64(v)
		case "bulwark_snapshots_published_total":
			if strings.Contains(labels, `changed="true"`) {
				s.Snapshots += int64(v)
			}
		case "bulwark_build_duration_seconds_count":
			s.Builds = int64(v)
		case "bulwark_build_duration_seconds_sum":
			s.BuildSeconds = v
		case "bulwark_connected_proxies":
			s.Connected += int64(v)
		case "bulwark_convergence_seconds_bucket":
			if i := strings.Index(labels, `le="`); i >= 0 {
				le := labels[i+4:]
				le = le[:strings.IndexByte(le, '"')]
				if le == "+Inf" {
					s.convergence[math.Inf(1)] = v
				} else if b, err := strconv.ParseFloat(le, 64); err == nil {
					s.convergence[b] = v
				}
			}
		}
	})
	return s, err
}

// memoryAt waits until the control plane is idle (its background work, such
// as persisting proxy status, is done: less than 5% of a core for half a
// second, at most 30 s), collects its garbage when it can, and samples.
func memoryAt(ctx context.Context, cp controlPlane, c *http.Client) (cpSample, error) {
	prev, err := sample(ctx, c, cp.adminURL())
	for i := 0; err == nil && i < 60; i++ {
		time.Sleep(500 * time.Millisecond)
		cur, serr := sample(ctx, c, cp.adminURL())
		if serr != nil {
			break
		}
		idle := cur.CPUSeconds-prev.CPUSeconds < 0.025
		prev = cur
		if idle {
			break
		}
	}
	forced := cp.forceGC(ctx)
	s, err := sample(ctx, c, cp.adminURL())
	s.GCForced = forced
	s.VmRSSBytes = vmRSS(cp.pid())
	if !cp.shared() {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.SimHeapInuseBytes, s.SimVmRSSBytes = int64(ms.HeapInuse), vmRSS(os.Getpid())
	return s, err
}

// histogramQuantile estimates a quantile of the difference of two
// cumulative histograms, by linear interpolation within the bucket (as
// Prometheus' histogram_quantile does).
func histogramQuantile(q float64, before, after map[float64]float64) (float64, float64) {
	bounds := make([]float64, 0, len(after))
	for b := range after {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	total := after[math.Inf(1)] - before[math.Inf(1)]
	if total <= 0 {
		return 0, 0
	}
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for _, b := range bounds {
		c := after[b] - before[b]
		if c >= rank {
			if math.IsInf(b, 1) {
				return prevBound, total
			}
			if c == prevCount {
				return b, total
			}
			return prevBound + (b-prevBound)*(rank-prevCount)/(c-prevCount), total
		}
		prevBound, prevCount = b, c
	}
	return prevBound, total
}

// latencies summarises durations in milliseconds.
type latencies struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50Ms"`
	P90Ms float64 `json:"p90Ms"`
	P99Ms float64 `json:"p99Ms"`
	MaxMs float64 `json:"maxMs"`
}

// summarize computes nearest-rank percentiles.
func summarize(ds []time.Duration) latencies {
	if len(ds) == 0 {
		return latencies{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return ms(s[max(0, min(i, len(s)-1))])
	}
	return latencies{Count: len(s), P50Ms: at(0.50), P90Ms: at(0.90), P99Ms: at(0.99), MaxMs: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// mark starts a measurement: every proxy remembers the versions it has
// ACKed now, and from now on when it ACKs different ones.
func (f *fleet) mark() {
	for _, p := range f.all() {
		timeouts := p.warmedByTimeout()
		p.mu.Lock()
		p.measure = measurement{active: true, base: p.acked, baseTimeouts: timeouts}
		p.mu.Unlock()
	}
	f.lastChange.Store(0)
}

// outcome is what a measurement found.
type outcome struct {
	times     []time.Duration // per converged proxy, since t0
	byGroup   map[string][]time.Duration
	converged int
	total     int
	changed   []string // the types that changed, by name
	groups    int      // groups with a change
}

// evaluate decides which proxies run the new config.
//
// The simulator is the only writer during a measurement, so the versions of
// a group's types either stay what every proxy of the group had ACKed when
// the change was written, or become new ones built from the write. For each
// group and type, the newest version ACKed by any proxy of the group since
// the write is the group's new version. A proxy has converged when, for
// every type that changed in its group, it has ACKed that version; its
// convergence time is its last such ACK minus t0 (just before the write was
// sent). With the warming client a proxy has also to be seen with nothing
// warming after that ACK, none of it warmed by initial_fetch_timeout, and
// its time is when it was seen so. The control plane's own view (/v1/proxies: the store revision each
// proxy's ACKed config was built from) confirms it when the API is there.
func (f *fleet) evaluate(t0 time.Time) outcome {
	type newest struct {
		at      time.Time
		version string
	}
	ps := f.all()
	latest := map[string]*[numTypes]newest{}
	for _, p := range ps {
		p.mu.Lock()
		g := latest[p.group()]
		if g == nil {
			g = &[numTypes]newest{}
			latest[p.group()] = g
		}
		for t := range numTypes {
			if at := p.measure.changedAt[t]; !at.IsZero() && at.After(g[t].at) {
				g[t] = newest{at, p.measure.changedTo[t]}
			}
		}
		p.mu.Unlock()
	}
	out := outcome{total: len(ps), byGroup: map[string][]time.Duration{}}
	changedTypes := map[string]bool{}
	for _, g := range latest {
		any := false
		for t := range numTypes {
			if g[t].version != "" {
				changedTypes[typeName[t]] = true
				any = true
			}
		}
		if any {
			out.groups++
		}
	}
	for t := range changedTypes {
		out.changed = append(out.changed, t)
	}
	slices.Sort(out.changed)
	for _, p := range ps {
		g := latest[p.group()]
		p.mu.Lock()
		var last time.Time
		ok, any := true, false
		for t := range numTypes {
			if g[t].version == "" {
				continue
			}
			any = true
			if p.measure.changedTo[t] != g[t].version {
				ok = false
				break
			}
			if p.measure.changedAt[t].After(last) {
				last = p.measure.changedAt[t]
			}
		}
		if ok && any && p.model != nil {
			ok = !p.measure.awaitWarm && !p.measure.byTimeout
			if p.measure.warmAt.After(last) {
				last = p.measure.warmAt
			}
		}
		p.mu.Unlock()
		if ok && any {
			out.converged++
			out.times = append(out.times, last.Sub(t0))
			out.byGroup[p.group()] = append(out.byGroup[p.group()], last.Sub(t0))
		}
	}
	return out
}

// waitConverged waits until every proxy has converged and no new version
// was ACKed for settle, or until timeout.
func (f *fleet) waitConverged(ctx context.Context, t0 time.Time, settle, timeout time.Duration) (outcome, bool) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	pt := f.reporter()
	for {
		select {
		case <-ctx.Done():
			return f.evaluate(t0), false
		case <-tick.C:
		}
		if pt.due() {
			o := f.evaluate(t0)
			pt.say("converging: %d/%d streams on the new version, %.0f s", o.converged, o.total, time.Since(t0).Seconds())
		}
		if time.Now().After(deadline) {
			return f.evaluate(t0), false
		}
		last := f.lastChange.Load()
		if last == 0 || time.Since(time.Unix(0, last)) < settle {
			continue
		}
		if o := f.evaluate(t0); o.converged == o.total {
			return o, true
		}
	}
}

// timeoutsSinceMark counts the clusters and listeners warmed by
// initial_fetch_timeout since mark, over the fleet.
func (f *fleet) timeoutsSinceMark() int {
	n := 0
	for _, p := range f.all() {
		if p.model == nil {
			continue
		}
		now := p.warmedByTimeout()
		p.mu.Lock()
		n += now - p.measure.baseTimeouts
		p.mu.Unlock()
	}
	return n
}
