package envoymodel

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Mode selects the ADS protocol variant.
type Mode int

const (
	// SotW is the state-of-the-world protocol (StreamAggregatedResources).
	SotW Mode = iota
	// Delta is the incremental protocol (DeltaAggregatedResources), as Envoy's
	// NewGrpcMuxImpl speaks it.
	Delta
)

// DefaultInitialFetchTimeout is Envoy's default ConfigSource.initial_fetch_timeout.
const DefaultInitialFetchTimeout = 15 * time.Second

// UserAgentName is the node.user_agent_name Envoy reports.
const UserAgentName = "envoy"

// Options configures an [Envoy].
type Options struct {
	// Mode is the protocol variant; the zero value is SotW.
	Mode Mode
	// NodeID is node.id; NodeCluster is node.cluster (the service in Bulwark's terms).
	NodeID, NodeCluster string
	// Metadata is node.metadata; nil sends none.
	Metadata *structpb.Struct
	// InitialFetchTimeout applies where a resource's ConfigSource does not set
	// initial_fetch_timeout. Zero means DefaultInitialFetchTimeout; negative disables it.
	InitialFetchTimeout time.Duration
	// Reject, if set, is asked about every decoded and validated resource; a non-nil
	// error rejects the whole response, exactly like a validation failure. It runs on
	// the stream's goroutine with the model locked and must not call the model. The
	// resource is shared with every instance that received the same bytes and must not
	// be modified; the predicate is asked for each instance, also when the decoding
	// came from the cache.
	Reject func(typeURL, name string, resource proto.Message) error
	// UseEDSCacheOnTimeout models the envoy.restart_features.use_eds_cache_for_ads
	// runtime feature (off by default in Envoy): a cluster warmed by timeout keeps the
	// assignment its predecessor had instead of having no endpoints.
	UseEDSCacheOnTimeout bool
	// Conn, if set, carries the stream instead of a connection of the model's own, so
	// a fleet of instances can share one HTTP/2 connection. Close leaves it open.
	Conn *grpc.ClientConn
}

// Envoy is one modelled Envoy instance. All methods are safe for concurrent use.
type Envoy struct {
	addr string
	opts Options
	node *corev3.Node

	mu       sync.Mutex
	conn     *grpc.ClientConn
	closed   bool
	cancel   context.CancelFunc // cancels the current stream
	done     chan struct{}      // closed when the current stream's goroutine exits
	sotw     discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	delta    discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	firstReq bool // the next SotW request is the first on its stream
	err      error

	types map[string]*apiState
	order []string // subscription order, as Envoy re-sends them on reconnect

	clusters  map[string]*clusterSlot
	listeners map[string]*listenerSlot
	routes    map[string]*routeSub

	// edsNames and edsSorted are the EDS names the clusters watch, derived from
	// clusters when asked and forgotten when a slot changes (see edsWatches).
	edsNames  map[string]struct{}
	edsSorted []string

	cdsSeen       bool      // a CDS response was processed (or CDS timed out)
	cdsDeadline   time.Time // initial_fetch_timeout of the CDS subscription
	initDone      bool      // cluster manager initialized, LDS started
	cdsWarmPaused bool      // CDS paused because clusters are warming
	timer         *time.Timer

	stats   Stats
	changed chan struct{}
}

// New returns a model that will connect to the ADS server at addr (host:port), or
// use opts.Conn if set.
func New(addr string, opts Options) *Envoy {
	if opts.InitialFetchTimeout == 0 {
		opts.InitialFetchTimeout = DefaultInitialFetchTimeout
	}
	node := &corev3.Node{Id: opts.NodeID, Cluster: opts.NodeCluster, UserAgentName: UserAgentName}
	if opts.Metadata != nil {
		node.Metadata = opts.Metadata
	}
	return &Envoy{
		addr:      addr,
		opts:      opts,
		node:      node,
		types:     map[string]*apiState{},
		clusters:  map[string]*clusterSlot{},
		listeners: map[string]*listenerSlot{},
		routes:    map[string]*routeSub{},
		stats:     Stats{ByType: map[string]TypeStats{}},
		changed:   make(chan struct{}),
	}
}

// Start dials the server and opens the ADS stream; Envoy's first request is CDS.
func (e *Envoy) Start() error {
	e.mu.Lock()
	if e.conn != nil || e.closed {
		e.mu.Unlock()
		return errors.New("envoymodel: already started or closed")
	}
	if e.opts.Conn != nil {
		e.conn = e.opts.Conn
	} else {
		conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			e.mu.Unlock()
			return fmt.Errorf("envoymodel: dial %s: %w", e.addr, err)
		}
		e.conn = conn
	}
	e.cdsDeadline = e.deadline(nil)
	cds := e.typeState(typeCluster)
	e.subscribe(cds)
	e.mu.Unlock()
	return e.openStream()
}

// Reconnect closes the current stream and opens a new one on the same connection,
// resuming from the last accepted versions as Envoy does after a stream failure.
func (e *Envoy) Reconnect() error {
	e.stopStream()
	return e.openStream()
}

// Close ends the stream and the connection. The model keeps its last state.
func (e *Envoy) Close() error {
	e.mu.Lock()
	e.closed = true
	if e.timer != nil {
		e.timer.Stop()
	}
	e.mu.Unlock()
	e.stopStream()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return nil
	}
	var err error
	if e.conn != e.opts.Conn {
		err = e.conn.Close()
	}
	e.conn = nil
	e.notify()
	return err
}

// Wait blocks until cond returns true or ctx ends. cond is evaluated once at first and
// again after every change of the model's state; it may call the model's methods.
func (e *Envoy) Wait(ctx context.Context, cond func() bool) error {
	for {
		e.mu.Lock()
		ch := e.changed
		e.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Err returns the error that ended the last stream, or nil while it is healthy.
func (e *Envoy) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

func (e *Envoy) openStream() error {
	e.mu.Lock()
	if e.closed || e.conn == nil {
		e.mu.Unlock()
		return errors.New("envoymodel: not started or closed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	client := discoverygrpc.NewAggregatedDiscoveryServiceClient(e.conn)
	var err error
	if e.opts.Mode == Delta {
		e.delta, err = client.DeltaAggregatedResources(ctx)
	} else {
		e.sotw, err = client.StreamAggregatedResources(ctx)
	}
	if err != nil {
		cancel()
		e.mu.Unlock()
		return fmt.Errorf("envoymodel: open stream: %w", err)
	}
	done := make(chan struct{})
	e.cancel, e.done, e.err = cancel, done, nil
	e.onStreamEstablished()
	e.settle()
	sotw, delta := e.sotw, e.delta
	e.mu.Unlock()
	go e.recvLoop(sotw, delta, done)
	return nil
}

func (e *Envoy) stopStream() {
	e.mu.Lock()
	cancel, done := e.cancel, e.done
	e.cancel, e.done = nil, nil
	e.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// recvLoop is the stream's only goroutine: it applies each response under the lock.
func (e *Envoy) recvLoop(
	sotw discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient,
	delta discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient,
	done chan struct{},
) {
	defer close(done)
	for {
		var err error
		if sotw != nil {
			var resp *discoverygrpc.DiscoveryResponse
			if resp, err = sotw.Recv(); err == nil {
				e.mu.Lock()
				e.handleSotw(resp)
				e.settle()
				e.mu.Unlock()
				continue
			}
		} else {
			var resp *discoverygrpc.DeltaDiscoveryResponse
			if resp, err = delta.Recv(); err == nil {
				e.mu.Lock()
				e.handleDelta(resp)
				e.settle()
				e.mu.Unlock()
				continue
			}
		}
		e.mu.Lock()
		if e.sotw == sotw && e.delta == delta {
			e.sotw, e.delta = nil, nil
		}
		e.err = err
		e.notify()
		e.mu.Unlock()
		return
	}
}

// settle re-arms the timeout timer and wakes waiters; callers hold e.mu.
func (e *Envoy) settle() {
	e.armTimer()
	e.notify()
}

func (e *Envoy) notify() {
	close(e.changed)
	e.changed = make(chan struct{})
}

// TypeStats counts protocol events for one resource type.
type TypeStats struct {
	// Responses is the number of responses received.
	Responses int
	// Requests is the number of requests sent, ACKs and NACKs included.
	Requests int
	// ACKs and NACKs count requests sent that acknowledge a response. A response
	// superseded while its type is paused is never acknowledged, as in Envoy.
	ACKs, NACKs int
}

// Stats is a snapshot of an instance's counters.
type Stats struct {
	// TypeStats holds the totals over all types.
	TypeStats
	// ByType holds the counters per type URL.
	ByType map[string]TypeStats
	// ClustersWarmedByTimeout and ListenersWarmedByTimeout count resources that became
	// active only because initial_fetch_timeout fired: the user-visible failure (a
	// cluster with no endpoints answers 503 UH; a listener without routes 404 NR).
	ClustersWarmedByTimeout, ListenersWarmedByTimeout int
	// LastNACK is the error_detail message of the most recent NACK.
	LastNACK string
}

func (e *Envoy) count(typeURL string, f func(*TypeStats)) {
	ts := e.stats.ByType[typeURL]
	f(&ts)
	e.stats.ByType[typeURL] = ts
	f(&e.stats.TypeStats)
}

// Stats returns a copy of the counters.
func (e *Envoy) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.stats
	s.ByType = make(map[string]TypeStats, len(e.stats.ByType))
	for k, v := range e.stats.ByType {
		s.ByType[k] = v
	}
	return s
}

func sortedKeys[V any](m map[string]V, keep func(V) bool) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		if keep(v) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
