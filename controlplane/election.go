package controlplane

import (
	"context"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
)

// Singleton duties. Most of a replica's work is its own (serving its
// proxies, writing their status) or safe on every replica at once (the
// experiment reaper and the adoption of experiments written straight into
// etcd end and lease with a compare-and-swap on the revision they saw, so
// several replicas doing it is harmless and a single owner would only add
// a hand-over gap). The directory sync is not: replicas whose checkouts
// are at different commits would revert each other's applies, and each
// would prune what the other declared. It runs on one replica at a time,
// elected through etcd.

// dutyTTL is the lease of a duty's owner: a replica that dies without
// resigning hands its duties over after at most this long.
const dutyTTL = 5 * time.Second

// duties elects this replica for singleton duties and reports who holds
// each.
type duties struct {
	client  *clientv3.Client
	prefix  string // the election keys' prefix, ending in "/"
	replica string
	metrics *metrics.Metrics
	log     *slog.Logger

	mu      sync.Mutex
	leaders map[string]string // duty → replica
}

func newDuties(cli *clientv3.Client, prefix, replica string, m *metrics.Metrics, log *slog.Logger) *duties {
	return &duties{client: cli, prefix: prefix + "/v1/work/leader/", replica: replica, metrics: m, log: log, leaders: map[string]string{}}
}

// Leaders returns, for each duty campaigned for, the replica that holds it
// ("" while none does, or while the store does not answer).
func (d *duties) Leaders() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]string, len(d.leaders))
	for k, v := range d.leaders {
		out[k] = v
	}
	return out
}

func (d *duties) setLeader(duty, replica string) {
	d.mu.Lock()
	d.leaders[duty] = replica
	d.mu.Unlock()
}

// run campaigns for duty until ctx ends and runs work while this replica
// holds it; work's context ends when the duty is lost (the session's lease
// expired: etcd was away for longer than dutyTTL) or ctx ends, and the duty
// is resigned then, so the next replica takes it at once.
func (d *duties) run(ctx context.Context, duty string, work func(context.Context)) {
	d.setLeader(duty, "")
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if d.term(ctx, duty, work) {
			backoff = 100 * time.Millisecond
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// term is one session: campaign, lead, hand over. It reports whether it
// got as far as leading.
func (d *duties) term(ctx context.Context, duty string, work func(context.Context)) bool {
	sess, err := concurrency.NewSession(d.client, concurrency.WithTTL(int(dutyTTL.Seconds())), concurrency.WithContext(ctx))
	if err != nil {
		return false
	}
	defer sess.Close()
	el := concurrency.NewElection(sess, d.prefix+duty)
	octx, stopObserving := context.WithCancel(ctx)
	var observing sync.WaitGroup
	observing.Add(1)
	go func() {
		defer observing.Done()
		for resp := range el.Observe(octx) {
			if len(resp.Kvs) > 0 {
				d.setLeader(duty, string(resp.Kvs[0].Value))
			}
		}
	}()
	defer func() {
		stopObserving()
		observing.Wait()
	}()
	// Campaign waits while another replica holds the duty; it ends with
	// the session or ctx.
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(sess.Ctx(), cancel)
	err = el.Campaign(cctx, d.replica)
	stop()
	cancel()
	if err != nil {
		return false
	}
	d.log.Info("leading a singleton duty", "duty", duty, "replica", d.replica)
	d.metrics.Leader.WithLabelValues(duty).Set(1)
	d.setLeader(duty, d.replica)
	wctx, stopWork := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		work(wctx)
	}()
	select {
	case <-sess.Done():
		d.log.Warn("lost a singleton duty (the store was away too long)", "duty", duty, "replica", d.replica)
	case <-ctx.Done():
	}
	stopWork()
	<-done
	d.metrics.Leader.WithLabelValues(duty).Set(0)
	rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
	_ = el.Resign(rctx) // hand over at once rather than after dutyTTL
	rcancel()
	return true
}
