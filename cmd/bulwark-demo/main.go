// Command bulwark-demo is something to watch: one process runs a Bulwark
// control plane (embedded etcd, its own data directory and ports, so it
// does not clash with make run), sample upstreams that can be told to fail,
// slow down or die, and proxyless gRPC callers of the demo mesh, and draws a
// live readout of every caller's success rate and latency percentiles. Its
// subcommands drive a running demo (docs/demo.md): upstream changes an
// upstream, stats prints the readout once, wait blocks until a number
// crosses a threshold. It drives the control plane through controlplane.New
// and the admin API only: it must not import the store, xds or the
// sub-packages of controlplane.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/grpclog"
	_ "google.golang.org/grpc/xds" // the xds:/// resolver and balancers of the callers
)

// Defaults: the demo's ports are those of make run plus 100, so both run
// side by side.
const (
	defaultDataDir      = ".bulwark/demo"
	defaultXDSAddr      = "127.0.0.1:18100"
	defaultAdminAddr    = "127.0.0.1:18180"
	defaultControlAddr  = "127.0.0.1:18190"
	defaultEtcdListen   = "127.0.0.1:2479"
	defaultEtcdPeer     = "127.0.0.1:2480"
	defaultUpstreamPort = 19101
	defaultControl      = "http://" + defaultControlAddr
)

const usage = `bulwark-demo: a control plane, upstreams and callers with a live readout.

  bulwark-demo [flags]                     start the demo (make demo); Ctrl-C stops it
  bulwark-demo upstream NAME [--latency D] [--errors PCT] [--down|--up] [--reset]
                                           change an upstream instance (payments-2) or
                                           every instance of a service (payments)
  bulwark-demo stats [-o table|json]       print the readout once
  bulwark-demo wait NAME METRIC above|below VALUE [--timeout D]
                                           wait until a caller's (payments) or an
                                           upstream's (payments-2) number crosses VALUE;
                                           METRIC: success, p50, p90, p99, rps
  bulwark-demo help                        this text

The subcommands talk to the demo at --control (default ` + defaultControl + `,
env BULWARK_DEMO_CONTROL). See docs/demo.md.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the exit code: 0 success,
// 1 failure (a wait that timed out, a refused change), 2 bad usage, 3 the
// demo is not running.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "upstream":
			return runUpstream(args[1:], stdout, stderr)
		case "stats":
			return runStats(args[1:], stdout, stderr)
		case "wait":
			return runWait(args[1:], stdout, stderr)
		case "help":
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "bulwark-demo: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return runDemo(args, stdout, stderr)
}

// runDemo starts the demo and draws the readout until SIGINT or SIGTERM.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bulwark-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage, "\nFlags of the demo:\n"); fs.PrintDefaults() }
	cfg := config{}
	fs.StringVar(&cfg.DataDir, "data-dir", defaultDataDir, "directory of the demo's etcd (wiped at start), log and bootstraps")
	fs.StringVar(&cfg.XDSAddr, "xds-addr", defaultXDSAddr, "address of the demo control plane's xDS server")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", defaultAdminAddr, "address of the demo control plane's admin API")
	fs.StringVar(&cfg.EtcdListen, "embedded-etcd-listen", defaultEtcdListen, "client address of the demo's embedded etcd")
	fs.StringVar(&cfg.EtcdPeer, "embedded-etcd-peer", defaultEtcdPeer, "peer address of the demo's embedded etcd")
	fs.StringVar(&cfg.ControlAddr, "control-addr", defaultControlAddr, "address of the demo's control endpoint (stats, upstream changes)")
	fs.IntVar(&cfg.UpstreamPort, "upstream-port", defaultUpstreamPort, "port of the first upstream; the others follow (0: any free ports)")
	fs.IntVar(&cfg.Rate, "rate", 40, "calls per second of each caller")
	fs.DurationVar(&cfg.Deadline, "deadline", 3*time.Second, "the callers' own deadline per call")
	fs.DurationVar(&cfg.Window, "window", 2*time.Second, "the span the readout's numbers cover")
	fs.StringVar(&cfg.EnvoyListener, "envoy-listener", "", "also call catalog (HTTP) through an Envoy sidecar's outbound listener at this address, e.g. 127.0.0.1:15001")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bulwark-demo: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	if cfg.Rate < 1 || cfg.Rate > 1000 {
		fmt.Fprintf(stderr, "bulwark-demo: --rate must be between 1 and 1000, got %d\n", cfg.Rate)
		return 2
	}
	if cfg.Window < 500*time.Millisecond {
		fmt.Fprintf(stderr, "bulwark-demo: --window must be at least 500ms, got %s\n", cfg.Window)
		return 2
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		fmt.Fprintln(stderr, "bulwark-demo: --data-dir:", err)
		return 1
	}
	// The callers are real gRPC applications: they find the control plane
	// through GRPC_XDS_BOOTSTRAP, which gRPC reads when the process starts.
	// The demo writes its bootstrap, then runs itself again with it set.
	boot, err := filepath.Abs(filepath.Join(cfg.DataDir, "grpc-bootstrap.json"))
	if err != nil {
		fmt.Fprintln(stderr, "bulwark-demo:", err)
		return 1
	}
	if os.Getenv("GRPC_XDS_BOOTSTRAP") != boot {
		grpcBoot, _ := bootstraps(cfg.XDSAddr, cfg.DataDir)
		if err := os.WriteFile(boot, []byte(grpcBoot), 0o644); err != nil {
			fmt.Fprintln(stderr, "bulwark-demo:", err)
			return 1
		}
		self, err := os.Executable()
		if err == nil {
			err = syscall.Exec(self, append([]string{os.Args[0]}, args...), append(os.Environ(), "GRPC_XDS_BOOTSTRAP="+boot))
		}
		fmt.Fprintln(stderr, "bulwark-demo: run again with the gRPC bootstrap:", err)
		return 1
	}

	logPath := filepath.Join(cfg.DataDir, "bulwark.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		fmt.Fprintln(stderr, "bulwark-demo:", err)
		return 1
	}
	defer logFile.Close()
	cfg.Logger = slog.New(slog.NewTextHandler(logFile, nil))
	// gRPC's own warnings (a caller reconnecting to a dead upstream) go to
	// the log, not over the readout.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, logFile, logFile))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	d, err := startDemo(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "bulwark-demo:", err)
		if errors.Is(err, syscall.EADDRINUSE) {
			fmt.Fprintln(stderr, "bulwark-demo: a port is taken: is another demo running (bin/bulwark-demo stats answers if so)? "+
				"Otherwise move the demo with --xds-addr, --admin-addr, --control-addr, --embedded-etcd-listen, --embedded-etcd-peer or --upstream-port.")
		}
		return 1
	}
	fmt.Fprintf(stdout, "bulwark-demo: control plane at http://%s (xDS %s), logs in %s; Ctrl-C stops the demo\n", d.cp.AdminAddr(), d.cp.XDSAddr(), logPath)
	draw(ctx, d, stdout)
	d.stop()
	fmt.Fprintln(stdout, "bulwark-demo: stopped")
	return 0
}

// draw redraws the readout every second on a terminal; elsewhere (a log,
// a pipe) it prints it every five seconds.
func draw(ctx context.Context, d *demo, w io.Writer) {
	every, tty := 5*time.Second, false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			every, tty = time.Second, true
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		out := d.stats().render()
		if tty {
			out = "\033[H\033[2J" + out + "\nIn another terminal: bin/bulwark-demo help; bin/bulwarkctl --server http://" + d.cp.AdminAddr() + " get policies. Ctrl-C stops.\n"
		} else {
			out += "\n"
		}
		fmt.Fprint(w, out)
	}
}
