package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver/seal"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds/ir"
	"github.com/bulwarkmesh/bulwark/xds/resolve"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// group is one proxy group's published state.
type group struct {
	key      xdsserver.GroupKey
	versions map[string]string // type URL → version
	// idleSince is when the last proxy left; zero while proxies are connected.
	idleSince time.Time
	resources *translate.Resources
	revision  int64
}

// Builder turns the store's content into one snapshot per proxy group.
type Builder struct {
	log     *slog.Logger
	cache   *xdsserver.Cache
	tracker *xdsserver.Tracker
	metrics *metrics.Metrics

	// mutate, when set, edits resources after the check and before the
	// snapshot is published. Tests use it (SetMutate) to publish a config a
	// proxy rejects. Guarded by mu.
	mutate func(xdsserver.GroupKey, *translate.Resources)

	buildMu sync.Mutex // one build at a time
	// translated and sealed remember the work of earlier builds: a service
	// is translated, and a resource encoded, once per distinct content, for
	// every group and build that needs it.
	translated *translate.Cache
	sealed     *seal.Sealer

	mu       sync.Mutex
	set      *policies.Set // the last set built from; never mutated
	revision int64
	observed time.Time // when the revision being built was first seen
	groups   map[string]*group
	problems map[string][]api.BuildProblem // group ("" for the store) → problems
	built    bool                          // a first build has completed
	loaded   bool                          // update has been given the store's content
	// rounds: the start of every build or publication in progress (or
	// waiting for the one in progress), to tell when publishing is stuck.
	rounds   map[uint64]time.Time
	roundSeq uint64
}

// NewBuilder returns a builder that publishes into cache and tells tr which
// versions it published.
func NewBuilder(log *slog.Logger, cache *xdsserver.Cache, tr *xdsserver.Tracker, m *metrics.Metrics) *Builder {
	return &Builder{
		log: log, cache: cache, tracker: tr, metrics: m,
		set:        policies.NewSet(),
		translated: translate.NewCache(),
		sealed:     seal.NewSealer(),
		groups:     map[string]*group{},
		rounds:     map[uint64]time.Time{},
		problems:   map[string][]api.BuildProblem{},
	}
}

// update installs a new set at a revision and rebuilds every active group.
func (b *Builder) update(ctx context.Context, set *policies.Set, revision int64, observed time.Time, storeProblems []api.BuildProblem) {
	b.mu.Lock()
	b.set, b.revision, b.observed = set, revision, observed
	b.loaded = true
	b.problems[""] = storeProblems
	keys := make([]xdsserver.GroupKey, 0, len(b.groups))
	for _, g := range b.groups {
		keys = append(keys, g.key)
	}
	b.mu.Unlock()
	b.metrics.StoreRevision.Set(float64(revision))
	b.cache.Groups().SetKnownCallers(knownCallers(set))

	defer b.round()()
	// Every group is built before any is published: once a push starts,
	// thousands of streams compete for the CPU with the Builder, and the
	// groups built after it would wait behind them.
	start := time.Now()
	b.buildMu.Lock()
	ready := make([]*prepared, 0, len(keys))
	for _, k := range keys {
		p, err := b.prepare(k)
		if err != nil {
			b.log.Error("build failed; proxies keep the last good config", "group", k.String(), "revision", revision, "err", err)
			continue
		}
		ready = append(ready, p)
	}
	if err := b.publish(ctx, ready); err != nil {
		b.log.Error("publish failed; proxies keep the last good config", "revision", revision, "err", err)
	}
	b.translated.Sweep()
	b.sealed.Sweep()
	b.buildMu.Unlock()
	b.metrics.BuildDuration.Observe(time.Since(start).Seconds())
	b.mu.Lock()
	b.built = true
	b.mu.Unlock()
}

// SetMutate installs a function that edits a group's resources after the
// check and before publishing (nil removes it). Tests use it to publish a
// config that a proxy rejects.
func (b *Builder) SetMutate(f func(xdsserver.GroupKey, *translate.Resources)) {
	b.mu.Lock()
	b.mutate = f
	b.mu.Unlock()
}

// Ensure builds a group on its first proxy's arrival, so that proxy's
// watches find a snapshot. Before the store has been read there is nothing
// to build from: the group is registered, and the first update builds it
// (its proxies' watches wait for that snapshot; see guardedCache).
func (b *Builder) Ensure(ctx context.Context, k xdsserver.GroupKey) {
	b.mu.Lock()
	g, ok := b.groups[k.String()]
	if ok {
		g.idleSince = time.Time{}
		b.mu.Unlock()
		return
	}
	b.groups[k.String()] = &group{key: k, versions: map[string]string{}}
	b.metrics.Groups.Set(float64(len(b.groups)))
	loaded := b.loaded
	b.mu.Unlock()
	if !loaded {
		return
	}
	if err := b.build(ctx, k); err != nil {
		b.log.Error("first build of a group failed", "group", k.String(), "err", err)
	}
}

// build resolves, translates, checks and publishes one group's snapshot.
// A failure keeps the last good snapshot.
func (b *Builder) build(ctx context.Context, k xdsserver.GroupKey) error {
	defer b.round()()
	b.buildMu.Lock()
	defer b.buildMu.Unlock()
	p, err := b.prepare(k)
	if err != nil {
		return err
	}
	return b.publish(ctx, []*prepared{p})
}

// prepared is a group's snapshot, built and checked, not yet published.
type prepared struct {
	key      xdsserver.GroupKey
	snap     *cachev3.Snapshot
	versions map[string]string
	res      *translate.Resources
	rev      int64
	observed time.Time
	problems []api.BuildProblem
}

// prepare resolves, translates and checks one group's snapshot. b.buildMu
// must be held.
func (b *Builder) prepare(k xdsserver.GroupKey) (*prepared, error) {
	b.mu.Lock()
	set, rev, observed, mutate := b.set, b.revision, b.observed, b.mutate
	b.mu.Unlock()

	id := k.String()
	var problems []api.BuildProblem
	x, errs := resolve.Resolve(set, k.Flavor, k.Service, resolve.Options{Outbound: k.Outbound})
	for _, err := range errs {
		problems = append(problems, api.BuildProblem{Group: id, Message: err.Error()})
	}
	translateService, z := b.translated.TranslateService, b.sealed
	if mutate != nil {
		// The test hook edits what it is given: keep it off shared objects.
		translateService, z = translate.TranslateService, nil
	}
	res, err := translate.TranslateUsing(x, translateService)
	if err != nil {
		// Translate leaves out what it cannot translate and says so; the
		// rest is still published.
		for _, e := range unwrapJoined(err) {
			problems = append(problems, api.BuildProblem{Group: id, Message: e.Error()})
		}
	}
	if res == nil {
		b.fail(id, "translate", problems)
		return nil, fmt.Errorf("translate: %w", err)
	}
	// Every piece passed ValidateAll when it was translated; the group-level
	// resources and the references are checked here.
	if err := translate.CheckReferences(res); err != nil {
		problems = append(problems, api.BuildProblem{Group: id, Message: "snapshot rejected before publishing: " + err.Error()})
		b.fail(id, "check", problems)
		return nil, err
	}
	if mutate != nil {
		// After the check on purpose: tests publish what a proxy rejects.
		mutate(k, res)
	}
	snap, versions, err := z.Snapshot(res)
	if err != nil {
		b.fail(id, "snapshot", problems)
		return nil, err
	}
	return &prepared{key: k, snap: snap, versions: versions, res: res, rev: rev, observed: observed, problems: problems}, nil
}

// publish records prepared builds and hands the snapshots whose content
// changed to the cache, which pushes them. Whatever does not wake a stream
// comes first (the tracker learns the new versions before any proxy can ACK
// them); then every snapshot is set in one tight round while new watches
// wait, so the last group is not pushed after the first group's proxies
// have taken the CPU. b.buildMu must be held.
func (b *Builder) publish(ctx context.Context, ps []*prepared) error {
	var push []*prepared
	pubs := make([]xdsserver.Publication, 0, len(ps))
	b.mu.Lock()
	for _, p := range ps {
		id := p.key.String()
		g := b.groups[id]
		if g == nil {
			continue // the group was dropped meanwhile
		}
		changed := !sameVersions(g.versions, p.versions)
		if changed {
			push = append(push, p)
		}
		b.problems[id] = p.problems
		g.versions, g.resources, g.revision = p.versions, p.res, p.rev
		b.metrics.Snapshots.WithLabelValues(fmt.Sprint(changed)).Inc()
		pubs = append(pubs, xdsserver.Publication{Group: id, Versions: p.versions, Revision: p.rev, ObservedAt: p.observed})
	}
	b.mu.Unlock()
	for _, p := range ps {
		if len(p.problems) > 0 {
			b.metrics.BuildFailures.WithLabelValues("partial").Inc()
			for _, pr := range p.problems {
				b.log.Warn("left out of the build", "group", p.key.String(), "problem", pr.Message)
			}
		}
	}
	if b.tracker != nil { // benchmarks build without one
		b.tracker.Published(pubs...)
	}

	var errs []error
	resume := b.cache.Pause()
	for _, p := range push {
		if err := b.cache.SetSnapshot(ctx, p.key.String(), p.snap); err != nil {
			errs = append(errs, fmt.Errorf("publish %s: %w", p.key, err))
			b.mu.Lock()
			if g := b.groups[p.key.String()]; g != nil {
				g.versions = nil // not published: the next build must publish
			}
			b.mu.Unlock()
		}
	}
	resume()
	return errors.Join(errs...)
}

func (b *Builder) fail(group, stage string, problems []api.BuildProblem) {
	b.metrics.BuildFailures.WithLabelValues(stage).Inc()
	b.mu.Lock()
	b.problems[group] = problems
	b.mu.Unlock()
}

// knownCallers are the callers that get a group of their own: every
// Service, and every name a policy's or an experiment's sources use. Any
// other node.cluster shares the one group of unknown callers, so that
// clients cannot make groups without bound.
func knownCallers(set *policies.Set) []string {
	seen := map[string]bool{}
	for _, name := range set.ServiceNames() {
		seen[name] = true
	}
	for _, p := range set.Policies {
		for _, s := range p.Spec.Sources {
			seen[s] = true
		}
	}
	for _, e := range set.Experiments {
		for _, s := range e.Spec.Sources {
			seen[s] = true
		}
	}
	return slices.Collect(maps.Keys(seen))
}

// Sweep drops groups whose proxies have all been gone longer than idle.
func (b *Builder) Sweep(active map[string]bool, idle time.Duration, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, g := range b.groups {
		switch {
		case active[id]:
			g.idleSince = time.Time{}
		case g.idleSince.IsZero():
			g.idleSince = now
		case now.Sub(g.idleSince) > idle:
			delete(b.groups, id)
			delete(b.problems, id)
			b.cache.ClearSnapshot(id)
		}
	}
	b.metrics.Groups.Set(float64(len(b.groups)))
	inUse := map[ir.Address]bool{}
	for _, g := range b.groups {
		inUse[g.key.Outbound] = true
	}
	b.cache.Groups().RetainOutbounds(inUse)
	b.cache.Forget()
}

// round records a build or publication from now until the returned func
// is called.
func (b *Builder) round() (done func()) {
	b.mu.Lock()
	b.roundSeq++
	id := b.roundSeq
	b.rounds[id] = time.Now()
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.rounds, id)
		b.mu.Unlock()
	}
}

// Stuck returns for how long the oldest build or publication in progress
// has been running (zero when none is): one that does not finish means no
// proxy gets config again.
func (b *Builder) Stuck(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	var oldest time.Time
	for _, t := range b.rounds {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return now.Sub(oldest)
}

// Problems returns every problem of the last builds, sorted.
func (b *Builder) Problems() []api.BuildProblem {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []api.BuildProblem
	for _, ps := range b.problems {
		out = append(out, ps...)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		return out[i].Message < out[j].Message
	})
	return out
}

// Revision returns the store revision of the last build.
func (b *Builder) Revision() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.revision
}

// Built reports whether a first build has completed.
func (b *Builder) Built() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.built
}

// Set returns the set of the last build (never mutated).
func (b *Builder) Set() (*policies.Set, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.set, b.revision
}

// Published returns a group's current resources, or nil.
func (b *Builder) Published(id string) *translate.Resources {
	b.mu.Lock()
	defer b.mu.Unlock()
	if g := b.groups[id]; g != nil {
		return g.resources
	}
	return nil
}

func sameVersions(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// unwrapJoined splits an errors.Join error into its parts.
func unwrapJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}
