package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/store"
)

// health follows the store's reachability for readiness.
type health struct {
	store   *store.Store
	grace   time.Duration
	metrics *metrics.Metrics
	built   func() bool // the first snapshot has been built
	// stuck says how long the oldest build in progress has run; stuckAfter
	// is when readiness gives up on it.
	stuck      func(time.Time) time.Duration
	stuckAfter time.Duration
	log        *slog.Logger

	mu      sync.Mutex
	lastOK  time.Time
	lastErr error
	up      bool
	// downLogged is set once an outage has been logged, so its end is too.
	downLogged bool
}

// watch pings the store every interval until ctx ends.
func (h *health) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		h.ping(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *health) ping(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	err := h.store.Ping(pctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	was := h.up
	h.up = err == nil
	if err == nil {
		h.lastOK, h.lastErr = time.Now(), nil
		h.metrics.StoreUp.Set(1)
	} else {
		h.lastErr = err
		h.metrics.StoreUp.Set(0)
	}
	switch {
	case !h.up && (was || !h.downLogged):
		h.downLogged = true
		h.log.Warn("store unreachable; serving the last good config", "err", err)
	case h.up && h.downLogged:
		h.downLogged = false
		h.log.Info("store reachable again")
	}
}

// StoreState says whether the store is up, and whether readiness still holds
// (the store has been unreachable for less than the grace period).
func (h *health) StoreState() (up, withinGrace bool, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.up {
		return true, true, ""
	}
	reason = "store unreachable"
	if h.lastErr != nil {
		reason += ": " + h.lastErr.Error()
	}
	if h.lastOK.IsZero() {
		return false, false, reason
	}
	return false, time.Since(h.lastOK) < h.grace, reason + " since " + h.lastOK.UTC().Format(time.RFC3339)
}

// Readiness is the answer of /health/ready: ready once the first snapshot
// is built, and while the store answers or has been away for less than the
// grace period.
func (h *health) Readiness() api.Readiness {
	var r api.Readiness
	if !h.built() {
		r.Reasons = append(r.Reasons, "first snapshot not built yet")
	}
	if d := h.stuck(time.Now()); h.stuckAfter > 0 && d > h.stuckAfter {
		r.Reasons = append(r.Reasons, fmt.Sprintf("publishing is stuck: a build has run for %s (longer than %s); proxies get no new config", d.Round(time.Second), h.stuckAfter))
	}
	if _, ok, reason := h.StoreState(); !ok {
		r.Reasons = append(r.Reasons, reason+" (longer than the grace period "+h.grace.String()+"); proxies keep their last good config")
	}
	r.Ready = len(r.Reasons) == 0
	return r
}
