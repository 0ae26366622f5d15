package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane"
	"github.com/bulwarkmesh/bulwark/store"
)

// controlPlane is the control plane under test: in this process
// (--embedded), a child process (--server-cmd), or one already running.
type controlPlane interface {
	xdsAddr() string
	adminURL() string
	// restart stops the control plane (abruptly unless graceful) and starts
	// it again on the same data and addresses; it returns when the new one
	// was started, once it is ready.
	restart(ctx context.Context, graceful bool) (time.Time, error)
	// forceGC makes the control plane collect garbage before memory is read.
	forceGC(ctx context.Context) bool
	// store returns a store to write through when the REST API cannot, or nil.
	store() *store.Store
	// shared reports whether the control plane shares this process, so its
	// process metrics include the simulator.
	shared() bool
	// pid is the control plane's process on this machine, 0 if unknown.
	pid() int
	stop()
}

// external is a control plane started by someone else.
type external struct {
	xds, admin string
	http       *http.Client
}

func (e *external) xdsAddr() string                  { return e.xds }
func (e *external) adminURL() string                 { return e.admin }
func (e *external) store() *store.Store              { return nil }
func (e *external) shared() bool                     { return false }
func (e *external) stop()                            {}
func (e *external) pid() int                         { return 0 }
func (e *external) forceGC(ctx context.Context) bool { return pprofGC(ctx, e.http, e.admin) }
func (e *external) restart(context.Context, bool) (time.Time, error) {
	return time.Time{}, errNoRestart
}

var errNoRestart = errors.New("the control plane was started elsewhere: give --embedded or --server-cmd to let the simulator restart it")

// pprofGC asks a control plane started with --enable-pprof to collect
// garbage (/debug/pprof/heap?gc=1), twice: sync.Pool caches survive one
// collection, and they are caches, not memory the control plane holds.
func pprofGC(ctx context.Context, c *http.Client, admin string) bool {
	for range 2 {
		if !pprofGCOnce(ctx, c, admin) {
			return false
		}
	}
	return true
}

func pprofGCOnce(ctx context.Context, c *http.Client, admin string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// waitReady polls /health/ready until it answers 200.
func waitReady(ctx context.Context, c *http.Client, admin string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, admin+"/health/ready", nil)
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("control plane at %s not ready after %s", admin, timeout)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// embedded runs the control plane in this process, with its embedded etcd
// in a temporary directory.
type embedded struct {
	cfg  controlplane.Config
	cp   *controlplane.ControlPlane
	dir  string
	http *http.Client
}

// freePort returns a loopback address with a port nobody listens on.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startEmbedded(ctx context.Context, debounce, maxDelay time.Duration, log *slog.Logger) (*embedded, error) {
	dir, err := os.MkdirTemp("", "bulwark-fleet-")
	if err != nil {
		return nil, err
	}
	var addrs [4]string
	for i := range addrs {
		if addrs[i], err = freePort(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	e := &embedded{dir: dir, http: &http.Client{Timeout: 30 * time.Second}, cfg: controlplane.Config{
		XDSAddr: addrs[0], AdminAddr: addrs[1], EmbeddedEtcdListen: addrs[2], EmbeddedEtcdPeer: addrs[3],
		DataDir: dir, Replica: "fleet", Debounce: debounce, MaxDelay: maxDelay,
		EnablePprof: true, Logger: log,
	}}
	if err := e.start(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return e, nil
}

func (e *embedded) start(ctx context.Context) error {
	cp, err := controlplane.New(e.cfg)
	if err != nil {
		return err
	}
	// The control plane lives until stop, not until the caller's context.
	if err := cp.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	e.cp = cp
	return waitReady(ctx, e.http, e.adminURL(), 2*time.Minute)
}

func (e *embedded) xdsAddr() string     { return e.cfg.XDSAddr }
func (e *embedded) adminURL() string    { return "http://" + e.cfg.AdminAddr }
func (e *embedded) store() *store.Store { return e.cp.Store() }
func (e *embedded) shared() bool        { return true }
func (e *embedded) pid() int            { return os.Getpid() }

func (e *embedded) forceGC(context.Context) bool {
	runtime.GC()
	runtime.GC()
	return true
}

// restart stops the control plane: its streams end at once either way.
func (e *embedded) restart(ctx context.Context, _ bool) (time.Time, error) {
	e.cp.Stop()
	e.cp = nil
	t := time.Now()
	return t, e.start(ctx)
}

func (e *embedded) stop() {
	if e.cp != nil {
		e.cp.Stop()
	}
	os.RemoveAll(e.dir)
}

// spawned runs the control plane as a child process (--server-cmd), so its
// CPU and memory are its own, and a restart is a real SIGKILL.
type spawned struct {
	args       []string
	xds, admin string
	logPath    string
	cmd        *exec.Cmd
	done       chan struct{} // closed when cmd has exited
	http       *http.Client
}

func startSpawned(ctx context.Context, command, xds, admin, logPath string) (*spawned, error) {
	args := strings.Fields(command)
	if len(args) == 0 {
		return nil, errors.New("--server-cmd is empty")
	}
	s := &spawned{args: args, xds: xds, admin: admin, logPath: logPath, http: &http.Client{Timeout: 30 * time.Second}}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *spawned) start(ctx context.Context) error {
	f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("server log: %w", err)
	}
	cmd := exec.Command(s.args[0], s.args[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", s.args[0], err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		f.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	readyCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan error, 1)
	go func() { ready <- waitReady(readyCtx, s.http, s.admin, 2*time.Minute) }()
	select {
	case err := <-ready:
		if err != nil {
			s.kill()
		}
		return err
	case <-done:
		s.cmd = nil
		return fmt.Errorf("%s exited before it was ready (%v); see %s", s.args[0], waitErr, s.logPath)
	}
}

func (s *spawned) pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// kill sends SIGKILL and waits until the process is gone.
func (s *spawned) kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd = nil
}

func (s *spawned) xdsAddr() string     { return s.xds }
func (s *spawned) adminURL() string    { return s.admin }
func (s *spawned) store() *store.Store { return nil }
func (s *spawned) shared() bool        { return false }
func (s *spawned) forceGC(ctx context.Context) bool {
	return pprofGC(ctx, s.http, s.admin)
}

func (s *spawned) restart(ctx context.Context, graceful bool) (time.Time, error) {
	if graceful {
		s.stop()
	} else {
		s.kill()
	}
	t := time.Now()
	return t, s.start(ctx)
}

// stop ends the child gracefully (SIGTERM), or kills it after 15 s.
func (s *spawned) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		s.cmd = nil
	case <-time.After(15 * time.Second):
		s.kill()
	}
}

// scrapeLines reads a Prometheus text exposition line by line.
func scrapeLines(r io.Reader, fn func(name, labels string, value float64)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		key := line[:sp]
		name, labels := key, ""
		if b := strings.IndexByte(key, '{'); b >= 0 {
			name, labels = key[:b], key[b:]
		}
		fn(name, labels, v)
	}
	return sc.Err()
}

// vmRSS reads VmRSS from /proc/<pid>/status, in bytes; 0 when unknown.
func vmRSS(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			return kb << 10
		}
	}
	return 0
}
