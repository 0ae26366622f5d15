// Command bulwark-fleet simulates a fleet of proxies against a Bulwark control
// plane and measures it: N concurrent ADS streams that behave like Envoy
// (SotW or delta) or like proxyless gRPC clients, spread over K source
// services. It waits until every stream is warm, writes a policy change,
// and reports how long every stream took to ACK config built from it, with
// the control plane's memory, CPU and goroutines, as JSON.
//
// Scenarios: converge (the default), storm (restart the control plane
// under the fleet), churn (a steady stream of writes, then quiet: CPU,
// coalescing and the soak's heap and goroutines), cold (start with the
// store already full). See docs/benchmarks.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	scenario string
	label    string
	out      string
	appendMD string

	embedded  bool
	serverCmd string
	serverLog string
	xdsAddr   string
	admin     string
	etcd      string
	prefix    string
	token     string
	writeVia  string
	debounce  time.Duration
	maxDelay  time.Duration

	streams        int
	streamsPerConn int
	protocol       string
	flavor         string
	sources        int
	grpcTargets    int
	backoffBase    time.Duration
	backoffMax     time.Duration
	warming        bool
	fetchTimeout   time.Duration

	seedServices int
	changeFile   string
	change       string
	target       string
	writes       int
	perGroup     bool
	gap          time.Duration
	settle       time.Duration
	timeout      time.Duration
	warmTimeout  time.Duration

	profileDir     string
	profileSeconds int
	progressEvery  time.Duration

	rate         float64
	duration     time.Duration
	quiet        time.Duration
	churnTargets int
	writers      int

	abuseTypes    int
	abuseClusters int
	abuseStreams  int
	abuseFor      time.Duration
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bulwark-fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.scenario, "scenario", "converge", "converge | storm | churn | cold")
	fs.StringVar(&o.label, "label", "", "free text recorded in the summary")
	fs.StringVar(&o.out, "out", "", "also write the JSON summary to this file")
	fs.StringVar(&o.appendMD, "append-md", "", "also append a Markdown summary to this file (e.g. docs/benchmarks.md)")

	fs.BoolVar(&o.embedded, "embedded", false, "start the control plane in this process, with an embedded etcd in a temporary directory")
	fs.StringVar(&o.serverCmd, "server-cmd", "", "start the control plane as a child process with this command line (e.g. \"bin/bulwark --data-dir /tmp/d --enable-pprof\"); storm kills it with SIGKILL and starts it again")
	fs.StringVar(&o.serverLog, "server-log", os.DevNull, "where the child control plane's output goes")
	fs.StringVar(&o.xdsAddr, "xds-addr", "127.0.0.1:18000", "the control plane's xDS address")
	fs.StringVar(&o.admin, "admin", "http://127.0.0.1:18080", "the control plane's admin URL")
	fs.StringVar(&o.etcd, "etcd", "127.0.0.1:2379", "etcd endpoint to write to when the REST API has no write endpoints")
	fs.StringVar(&o.prefix, "prefix", "/bulwark", "the control plane's etcd key prefix")
	fs.StringVar(&o.token, "token", os.Getenv("BULWARK_TOKEN"), "bearer token for the admin API")
	fs.StringVar(&o.writeVia, "write-via", "auto", "auto | api | etcd: how changes and seeds are written")
	fs.DurationVar(&o.debounce, "debounce", 20*time.Millisecond, "--embedded: the control plane's debounce")
	fs.DurationVar(&o.maxDelay, "max-delay", 200*time.Millisecond, "--embedded: the control plane's max delay")

	fs.IntVar(&o.streams, "streams", 1000, "concurrent ADS streams (simulated proxies)")
	fs.IntVar(&o.streamsPerConn, "streams-per-conn", 100, "streams multiplexed on one gRPC connection; 1: one connection per simulated proxy, as every Envoy has its own (a file descriptor per proxy in both processes)")
	fs.StringVar(&o.protocol, "protocol", protocolSotW, "sotw | delta")
	fs.StringVar(&o.flavor, "flavor", flavorEnvoy, "envoy | grpc (proxyless gRPC: SotW, listeners by service name)")
	fs.IntVar(&o.sources, "sources", 10, "source services the proxies belong to (node.cluster): the proxy groups")
	fs.IntVar(&o.grpcTargets, "grpc-targets", 3, "--flavor grpc: services each client dials (xds:///name), the change's target first")
	fs.DurationVar(&o.backoffBase, "backoff-base", 250*time.Millisecond, "reconnect backoff: first delay (full jitter)")
	fs.DurationVar(&o.backoffMax, "backoff-max", 5*time.Second, "reconnect backoff: longest delay")
	fs.BoolVar(&o.warming, "warming", true, "--flavor envoy: run every proxy as an Envoy ADS model (test/envoymodel: validates, NACKs, warms clusters and listeners, holds the CDS ACK while a cluster warms); a proxy has converged once it ACKed the new config and nothing is warming. --warming=false: ACK whatever arrives")
	fs.DurationVar(&o.fetchTimeout, "initial-fetch-timeout", 0, "--warming: the models' initial_fetch_timeout (0: Envoy's 15 s); a resource warmed by it counts as not converged")

	fs.IntVar(&o.seedServices, "seed-services", 0, "write services svc-00000… with a policy each before measuring (missing sources are always seeded)")
	fs.StringVar(&o.changeFile, "change-file", "", "the change: a policy (PUT /v1/policies/NAME) or a bundle (POST /v1/apply); default flips the request timeout of --target between 3s and 4s")
	fs.StringVar(&o.change, "change", changeRoute, "the built-in change: route (flip timeouts.request of --target between 3s and 4s: route configurations only) | cluster (flip bulkhead.maxConnections of --target between 100 and 101: clusters only)")
	fs.StringVar(&o.target, "target", "", "the service whose policy the built-in change flips (default: the first service)")
	fs.IntVar(&o.writes, "writes", 3, "converge: measured writes, one after the other")
	fs.BoolVar(&o.perGroup, "per-group", false, "converge: report every group's convergence too")
	fs.DurationVar(&o.gap, "gap", time.Second, "converge: pause between measured writes")
	fs.DurationVar(&o.settle, "settle", 300*time.Millisecond, "a measurement ends once every stream converged and nothing new was ACKed for this long")
	fs.DurationVar(&o.timeout, "timeout", time.Minute, "longest wait for convergence, or for a storm to settle")
	fs.DurationVar(&o.warmTimeout, "warm-timeout", 5*time.Minute, "longest wait for the fleet to be warm")
	fs.DurationVar(&o.progressEvery, "progress-every", 5*time.Second, "how often a long wait (warm-up, convergence) prints its counts on stderr")

	fs.StringVar(&o.profileDir, "profile-dir", "", "save the control plane's heap profile once the fleet is warm, and a CPU profile and an execution trace of the scenario, here (needs /debug/pprof: --enable-pprof)")
	fs.IntVar(&o.profileSeconds, "profile-seconds", 10, "length of the CPU profile and the trace")
	fs.Float64Var(&o.rate, "rate", 100, "churn: policy writes per second")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "churn: how long the writes go on")
	fs.DurationVar(&o.quiet, "quiet", 30*time.Second, "churn: quiet time before heap and goroutines are compared with the baseline")
	fs.IntVar(&o.churnTargets, "churn-targets", 50, "churn: services whose policies the writes rotate over")
	fs.IntVar(&o.writers, "writers", 128, "churn: writes in flight at most (writers in parallel)")
	fs.IntVar(&o.abuseTypes, "abuse-types", 0, "converge: while the fleet converges, abusive clients ask for this many distinct garbage type URLs in all")
	fs.IntVar(&o.abuseClusters, "abuse-clusters", 0, "converge: ... and open streams with this many distinct node.cluster values, each subscribing to clusters and listeners")
	fs.IntVar(&o.abuseStreams, "abuse-streams", 16, "abusive streams open at once")
	fs.DurationVar(&o.abuseFor, "abuse-max", 2*time.Minute, "the abusers stop after this long at the latest")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return o, o.validate()
}

func (o options) validate() error {
	var errs []error
	switch o.scenario {
	case "converge", "storm", "churn", "cold":
	default:
		errs = append(errs, fmt.Errorf("--scenario must be converge, storm, churn or cold, got %q", o.scenario))
	}
	if o.protocol != protocolSotW && o.protocol != protocolDelta {
		errs = append(errs, fmt.Errorf("--protocol must be sotw or delta, got %q", o.protocol))
	}
	if o.flavor != flavorEnvoy && o.flavor != flavorGRPC {
		errs = append(errs, fmt.Errorf("--flavor must be envoy or grpc, got %q", o.flavor))
	}
	if o.flavor == flavorGRPC && o.protocol == protocolDelta {
		errs = append(errs, errors.New("--flavor grpc speaks SotW only, as gRPC does"))
	}
	if o.embedded && o.serverCmd != "" {
		errs = append(errs, errors.New("--embedded and --server-cmd exclude each other"))
	}
	if o.sources < 1 {
		errs = append(errs, errors.New("--sources must be at least 1"))
	}
	if o.scenario != "cold" && o.streams < o.sources {
		errs = append(errs, fmt.Errorf("--streams (%d) must be at least --sources (%d)", o.streams, o.sources))
	}
	if o.streamsPerConn < 1 || o.grpcTargets < 1 || o.writes < 1 || o.writers < 1 {
		errs = append(errs, errors.New("--streams-per-conn, --grpc-targets, --writes and --writers must be at least 1"))
	}
	if o.rate <= 0 {
		errs = append(errs, errors.New("--rate must be positive"))
	}
	if o.backoffBase <= 0 || o.backoffMax < o.backoffBase {
		errs = append(errs, errors.New("--backoff-base must be positive and at most --backoff-max"))
	}
	if o.change != changeRoute && o.change != changeCluster {
		errs = append(errs, fmt.Errorf("--change must be route or cluster, got %q", o.change))
	}
	if o.abuseTypes < 0 || o.abuseClusters < 0 || o.abuseStreams < 1 || o.abuseFor <= 0 {
		errs = append(errs, errors.New("--abuse-types and --abuse-clusters must not be negative, --abuse-streams and --abuse-max positive"))
	}
	if o.scenario == "cold" && o.seedServices < 1 {
		errs = append(errs, errors.New("--scenario cold needs --seed-services"))
	}
	return errors.Join(errs...)
}

// report is the JSON summary.
type report struct {
	Scenario     string         `json:"scenario"`
	Label        string         `json:"label,omitempty"`
	Machine      machine        `json:"machine"`
	ControlPlane string         `json:"controlPlane"`
	Shared       bool           `json:"sharedProcess,omitempty"`
	Config       map[string]any `json:"config"`
	WriteVia     string         `json:"writeVia"`
	Services     int            `json:"services"`
	SeedSeconds  float64        `json:"seedSeconds,omitempty"`
	Warmup       *warmup        `json:"warmup,omitempty"`
	Memory       *memory        `json:"memory,omitempty"`
	Writes       []writeReport  `json:"writes,omitempty"`
	Convergence  *latencies     `json:"convergence,omitempty"`
	Storm        *stormReport   `json:"storm,omitempty"`
	Churn        *churnReport   `json:"churn,omitempty"`
	Cold         *coldReport    `json:"cold,omitempty"`
	Abuse        *abuseReport   `json:"abuse,omitempty"`
	// WarmedByTimeout and NACKs total the writes' (warming client).
	WarmedByTimeout int   `json:"warmedByTimeout"`
	NACKs           int64 `json:"nacks"`
	Streams         int64 `json:"streamsOpened"`
	Failures        int64 `json:"streamFailures"`
	// StreamErrors: why the failed streams ended (gRPC code: message → count).
	StreamErrors map[string]int64 `json:"streamErrors,omitempty"`
	Error        string           `json:"error,omitempty"`
}

// warmup: the pilot (one proxy per group) first, then the rest.
type warmup struct {
	PilotSeconds float64 `json:"pilotSeconds"`
	FleetSeconds float64 `json:"fleetSeconds"`
}

// memory is the control plane's memory before and after the fleet beyond
// the pilot connected; the difference per proxy is what one more proxy
// costs beyond the shared snapshots (the pilot made every group exist).
type memory struct {
	Baseline          cpSample `json:"baseline"`
	Loaded            cpSample `json:"loaded"`
	ProxiesAdded      int      `json:"proxiesAdded"`
	PerProxyHeapBytes int64    `json:"perProxyHeapBytes"`
	PerProxyRSSBytes  int64    `json:"perProxyRSSBytes"`
	// PerProxyVmRSSBytes is the same from the control plane's VmRSS
	// (/proc/<pid>/status), when the simulator knows its process.
	PerProxyVmRSSBytes int64 `json:"perProxyVmRSSBytes,omitempty"`
	// What one more simulated stream costs the simulator (heap in use and
	// VmRSS of its own process; with --embedded the RSS includes the
	// control plane).
	SimPerStreamHeapBytes int64 `json:"simulatorPerStreamHeapBytes,omitempty"`
	SimPerStreamRSSBytes  int64 `json:"simulatorPerStreamRSSBytes,omitempty"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "bulwark-fleet:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The log handler and the progress lines write from several goroutines.
	stderr = &lockedWriter{w: stderr}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	progress := func(format string, a ...any) {
		fmt.Fprintf(stderr, "bulwark-fleet: "+format+"\n", a...)
	}
	rep, err := measure(ctx, o, log, progress)
	if err != nil {
		rep.Error = err.Error()
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Fprintln(stdout, string(b))
	if o.out != "" {
		if werr := os.WriteFile(o.out, append(b, '\n'), 0o644); werr != nil {
			fmt.Fprintln(stderr, "bulwark-fleet:", werr)
		}
	}
	if o.appendMD != "" {
		if werr := appendMarkdown(o.appendMD, args, rep); werr != nil {
			fmt.Fprintln(stderr, "bulwark-fleet:", werr)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "bulwark-fleet:", err)
		return 1
	}
	return 0
}

// measure runs one scenario and fills the report as far as it gets.
func measure(ctx context.Context, o options, log *slog.Logger, progress func(string, ...any)) (*report, error) {
	rep := &report{Scenario: o.scenario, Label: o.label, Machine: readMachine(), Config: map[string]any{
		"streams": o.streams, "streamsPerConn": o.streamsPerConn, "protocol": o.protocol, "flavor": o.flavor,
		"sources": o.sources, "seedServices": o.seedServices, "gomaxprocs": runtime.GOMAXPROCS(0),
		"warming": o.warming && o.flavor == flavorEnvoy, "change": o.change,
	}}
	t := time.Now()
	var cp controlPlane
	var err error
	progress("control plane: starting (%s)", controlPlaneKind(o))
	switch {
	case o.embedded:
		rep.ControlPlane = "embedded"
		cp, err = startEmbedded(ctx, o.debounce, o.maxDelay, log)
	case o.serverCmd != "":
		rep.ControlPlane = "child process: " + o.serverCmd
		cp, err = startSpawned(ctx, o.serverCmd, o.xdsAddr, o.admin, o.serverLog)
	default:
		rep.ControlPlane = "external: " + o.xdsAddr
		cp = &external{xds: o.xdsAddr, admin: o.admin, http: &http.Client{Timeout: 30 * time.Second}}
	}
	if err != nil {
		return rep, err
	}
	defer cp.stop()
	rep.Shared = cp.shared()
	progress("control plane: %s, ready in %.2f s (pid %d)", rep.ControlPlane, time.Since(t).Seconds(), cp.pid())
	w, err := newWriter(ctx, o.writeVia, cp.adminURL(), o.token, cp.store(), o.etcd, o.prefix)
	if err != nil {
		return rep, err
	}
	defer w.close()
	rep.WriteVia = w.via
	s := &session{opt: o, cp: cp, w: w, http: &http.Client{Timeout: 60 * time.Second}, rep: rep, progress: progress, recvHook: testRecvHook}

	if o.seedServices > 0 {
		progress("seed: writing %d services with a policy each (via %s)", o.seedServices, w.via)
		t := time.Now()
		if _, err := w.seed(ctx, 0, o.seedServices); err != nil {
			return rep, err
		}
		rep.SeedSeconds = secs(time.Since(t))
		progress("seed: %d services with a policy each in %.2f s (via %s)", o.seedServices, rep.SeedSeconds, w.via)
	}
	if o.scenario == "cold" {
		return rep, s.cold(ctx)
	}
	if err := s.prepare(ctx); err != nil {
		return rep, err
	}
	fl := s.fl
	defer func() {
		rep.Streams, rep.Failures, rep.StreamErrors = fl.streams.Load(), fl.failures.Load(), fl.streamErrors()
		fl.close()
	}()
	if o.profileDir != "" {
		if !cp.shared() { // in one process, the control plane's profile shows both
			stopSelf, err := profileSelf(filepath.Join(o.profileDir, "simulator-cpu-"+o.scenario+".pb.gz"))
			if err != nil {
				return rep, err
			}
			defer stopSelf()
		}
		if err := s.profile(ctx, "heap", "heap.pb.gz"); err != nil {
			return rep, err
		}
		done := make(chan error, 2)
		go func() {
			done <- s.profile(ctx, fmt.Sprintf("profile?seconds=%d", o.profileSeconds), "cpu-"+o.scenario+".pb.gz")
		}()
		go func() {
			done <- s.profile(ctx, fmt.Sprintf("trace?seconds=%d", o.profileSeconds), "trace-"+o.scenario+".out")
		}()
		defer func() {
			for range 2 {
				if err := <-done; err != nil {
					log.Warn("profile", "err", err)
				}
			}
		}()
	}
	switch o.scenario {
	case "converge":
		return rep, s.converge(ctx)
	case "storm":
		err := s.storm(ctx)
		if st := rep.Storm; st != nil {
			progress("storm: restart → ready %.2f s, %d/%d streams warm again %.2f s after the kill", st.RestartSeconds, st.Reacked, st.Total, st.AllAckedSeconds)
		}
		return rep, err
	default:
		err := s.churn(ctx)
		if c := rep.Churn; c != nil {
			progress("churn: %d writes in %.0f s (%d failed), %.2f cores, %d builds; final write converged %d/%d", c.Writes, c.Seconds, c.Failed, c.CPUCores, c.Builds, c.Final.Converged, c.Final.Total)
		}
		return rep, err
	}
}

// prepare finds or seeds the sources, connects the pilot (one proxy per
// group), measures the baseline, then connects the rest of the fleet.
func (s *session) prepare(ctx context.Context) error {
	o := s.opt
	names, err := s.w.serviceNames(ctx)
	if err != nil {
		return fmt.Errorf("list services: %w", err)
	}
	if len(names) < o.sources {
		// Seed only what is missing: svc-00000… that do not exist yet.
		if _, err := s.w.seed(ctx, 0, o.sources); err != nil {
			return err
		}
		if names, err = s.w.serviceNames(ctx); err != nil {
			return err
		}
	}
	s.rep.Services = len(names)
	s.services = names
	s.sources = names[:o.sources]
	s.target = o.target
	if s.target == "" {
		s.target = names[0]
	}
	s.rep.Config["target"] = s.target
	if o.changeFile != "" {
		if s.change, err = os.ReadFile(o.changeFile); err != nil {
			return err
		}
	} else if s.flip, err = newFlipper(ctx, s.w, []string{s.target}); err != nil {
		return err
	}
	targets := []string{s.target}
	for _, n := range names {
		if len(targets) >= o.grpcTargets {
			break
		}
		if n != s.target {
			targets = append(targets, n)
		}
	}
	s.fl = newFleet(fleetOptions{
		xdsAddr: s.cp.xdsAddr(), protocol: o.protocol, flavor: o.flavor, streamsPerConn: o.streamsPerConn,
		backoffBase: o.backoffBase, backoffMax: o.backoffMax, grpcTargets: targets,
		nodePrefix: fmt.Sprintf("fleet-%d", time.Now().UnixNano()%1e9),
		warming:    o.warming, initialFetchTimeout: o.fetchTimeout, recvHook: s.recvHook,
		progress: s.progress, progressEvery: o.progressEvery,
	})
	s.progress("pilot: opening %d streams, one per group", o.sources)
	if err := s.fl.add(o.sources, s.sources); err != nil {
		return err
	}
	client := "ACK everything"
	if s.fl.opt.useModel() {
		client = "Envoy model, warming"
	}
	pilot, err := s.fl.waitWarm(ctx, o.sources, o.warmTimeout)
	if err != nil {
		return fmt.Errorf("pilot: %w", err)
	}
	s.progress("pilot: %d streams (one per group, %s/%s, %s) warm in %.2f s", o.sources, o.flavor, o.protocol, client, pilot.Seconds())
	base, err := memoryAt(ctx, s.cp, s.http)
	if err != nil {
		return err
	}
	s.progress("fleet: opening %d more streams", o.streams-o.sources)
	if err := s.fl.add(o.streams-o.sources, s.sources); err != nil {
		return err
	}
	all, err := s.fl.waitWarm(ctx, o.streams, o.warmTimeout)
	s.rep.Warmup = &warmup{PilotSeconds: secs(pilot), FleetSeconds: secs(all)}
	if err != nil {
		return err
	}
	s.progress("fleet: %d streams over %d connections warm in %.2f s (%d services, %d stream failures)",
		o.streams, len(s.fl.conns), all.Seconds(), len(names), s.fl.failures.Load())
	loaded, err := memoryAt(ctx, s.cp, s.http)
	if err != nil {
		return err
	}
	m := &memory{Baseline: base, Loaded: loaded, ProxiesAdded: o.streams - o.sources}
	if m.ProxiesAdded > 0 {
		m.PerProxyHeapBytes = (loaded.HeapInuseBytes - base.HeapInuseBytes) / int64(m.ProxiesAdded)
		m.PerProxyRSSBytes = (loaded.RSSBytes - base.RSSBytes) / int64(m.ProxiesAdded)
		m.PerProxyVmRSSBytes = (loaded.VmRSSBytes - base.VmRSSBytes) / int64(m.ProxiesAdded)
		m.SimPerStreamHeapBytes = (loaded.SimHeapInuseBytes - base.SimHeapInuseBytes) / int64(m.ProxiesAdded)
		m.SimPerStreamRSSBytes = (loaded.SimVmRSSBytes - base.SimVmRSSBytes) / int64(m.ProxiesAdded)
	}
	s.rep.Memory = m
	s.progress("memory: control plane %.1f KB heap, %.1f KB VmRSS per proxy (VmRSS %.0f → %.0f MB); simulator %.1f KB heap per stream",
		float64(m.PerProxyHeapBytes)/1024, float64(m.PerProxyVmRSSBytes)/1024, mb(base.VmRSSBytes), mb(loaded.VmRSSBytes), float64(m.SimPerStreamHeapBytes)/1024)
	return nil
}

// cold restarts the control plane over the seeded store and times it until
// ready, then (with --streams) until a fleet connected after ready is warm.
func (s *session) cold(ctx context.Context) error {
	names, err := s.w.serviceNames(ctx)
	if err != nil {
		return err
	}
	s.rep.Services = len(names)
	rep := &coldReport{Services: len(names)}
	s.rep.Cold = rep
	start, err := s.cp.restart(ctx, true)
	if err != nil {
		return err
	}
	rep.ReadySeconds = secs(time.Since(start))
	s.progress("cold: ready %.2f s after start with %d services", rep.ReadySeconds, len(names))
	if s.opt.streams > 0 {
		s.sources = names[:min(s.opt.sources, len(names))]
		s.fl = newFleet(fleetOptions{
			xdsAddr: s.cp.xdsAddr(), protocol: s.opt.protocol, flavor: s.opt.flavor, streamsPerConn: s.opt.streamsPerConn,
			backoffBase: s.opt.backoffBase, backoffMax: s.opt.backoffMax, grpcTargets: names[:min(s.opt.grpcTargets, len(names))],
			nodePrefix: fmt.Sprintf("fleet-%d", time.Now().UnixNano()%1e9),
			warming:    s.opt.warming, initialFetchTimeout: s.opt.fetchTimeout,
		})
		defer s.fl.close()
		if err := s.fl.add(s.opt.streams, s.sources); err != nil {
			return err
		}
		if _, err := s.fl.waitWarm(ctx, s.opt.streams, s.opt.warmTimeout); err != nil {
			return err
		}
		rep.WarmSeconds = secs(time.Since(start))
		s.progress("cold: %d streams warm %.2f s after start", s.opt.streams, rep.WarmSeconds)
	}
	rep.After, _ = memoryAt(ctx, s.cp, s.http)
	return nil
}

// profileSelf profiles the simulator's own CPU until the returned func is
// called: it shows when the simulator, not the control plane, is the limit.
func profileSelf(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
