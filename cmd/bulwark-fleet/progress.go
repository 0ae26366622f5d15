package main

import (
	"io"
	"sync"
	"time"
)

// progressTicker paces the progress lines of one long wait (warm-up,
// convergence): the first line at once, then at most one per
// fleetOptions.progressEvery, so the counts show while the wait runs
// without flooding stderr.
type progressTicker struct {
	f    *fleet
	next time.Time
}

func (f *fleet) reporter() *progressTicker { return &progressTicker{f: f} }

// due reports whether a line would print now; it lets a caller skip
// computing counts that would not be shown.
func (t *progressTicker) due() bool {
	return t.f.opt.progress != nil && !time.Now().Before(t.next)
}

// say prints a line when one is due.
func (t *progressTicker) say(format string, a ...any) {
	if !t.due() {
		return
	}
	t.next = time.Now().Add(t.f.opt.progressEvery)
	t.f.opt.progress(format, a...)
}

// controlPlaneKind names what the run measures against, for the first line.
func controlPlaneKind(o options) string {
	switch {
	case o.embedded:
		return "embedded, in this process"
	case o.serverCmd != "":
		return "child process"
	}
	return "external at " + o.xdsAddr
}

// lockedWriter serialises writes from several goroutines to one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
