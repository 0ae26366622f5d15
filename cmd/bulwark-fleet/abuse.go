package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// abuseReport is what the abusive clients did while the fleet converged.
type abuseReport struct {
	// Types and Clusters are what was asked for: distinct garbage type URLs
	// and distinct node.cluster values.
	Types    int `json:"types"`
	Clusters int `json:"clusters"`
	// TypesSent and ClustersSent are how many of them reached the server.
	TypesSent    int64 `json:"typesSent"`
	ClustersSent int64 `json:"clustersSent"`
	Streams      int64 `json:"streams"`
	Responses    int64 `json:"responses"`
	// Errors counts how the streams ended, by gRPC code (InvalidArgument:
	// the server refused an unknown type URL; EOF: it closed the stream
	// cleanly after the client's CloseSend).
	Errors  map[string]int64 `json:"errors,omitempty"`
	Seconds float64          `json:"seconds"`
	// Unfinished is set when the abusers were stopped (time limit or end
	// of the measurement) before they sent everything.
	Unfinished bool `json:"unfinished,omitempty"`
}

// abuseTypesPerStream bounds the garbage type URLs one stream asks for
// before it is closed and the next one opened.
const abuseTypesPerStream = 500

// abuseJob is one abusive stream: a node.cluster (-1: a shared one) and a
// range of garbage type URLs.
type abuseJob struct {
	cluster    int
	typeLo, hi int
}

// abuser runs the abusive clients. Everything is bounded: each type URL
// and each cluster value is sent at most once (a refused stream is reopened
// for the rest of its job while it makes progress, and abuseReopens more
// times), and everything stops at the deadline or when stop is called.
type abuser struct {
	rep    abuseReport
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	start  time.Time
	sentT  atomic.Int64
	sentC  atomic.Int64
	strms  atomic.Int64
	resps  atomic.Int64
}

const abuseReopens = 3

// startAbuse starts the abusive clients against the control plane at addr,
// which must be a loopback address.
func startAbuse(ctx context.Context, addr string, types, clusters, parallel int, limit time.Duration) (*abuser, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("--abuse-*: the control plane must be on loopback, not %s", addr)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
	a := &abuser{rep: abuseReport{Types: types, Clusters: clusters, Errors: map[string]int64{}}, cancel: cancel, done: make(chan struct{}), start: time.Now()}
	jobs := make(chan abuseJob)
	go func() {
		defer close(jobs)
		next := 0
		for c := 0; c < clusters || next < types; c++ {
			j := abuseJob{cluster: -1, typeLo: next, hi: min(types, next+abuseTypesPerStream)}
			if c < clusters {
				j.cluster = c
			}
			next = j.hi
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				a.run(ctx, conn, j)
			}
		}()
	}
	go func() {
		wg.Wait()
		conn.Close()
		a.mu.Lock()
		a.rep.Unfinished = ctx.Err() != nil
		a.mu.Unlock()
		cancel()
		close(a.done)
	}()
	return a, nil
}

// run sends one job, reopening a refused stream for the rest of it.
func (a *abuser) run(ctx context.Context, conn *grpc.ClientConn, j abuseJob) {
	node := &corev3.Node{Id: fmt.Sprintf("abuse-%d-%d", j.cluster, j.typeLo), Cluster: "abuse-shared", UserAgentName: "envoy"}
	if j.cluster >= 0 {
		node.Cluster = fmt.Sprintf("abuse-%05d", j.cluster)
	}
	clusterSent := false
	next := j.typeLo
	// A stream the server ended is reopened for the rest of the job, as
	// long as the last one got something out, and abuseReopens more times.
	for stalls := 0; stalls <= abuseReopens && ctx.Err() == nil; {
		from := next
		if a.stream(ctx, conn, node, &next, j.hi, !clusterSent) {
			return
		}
		clusterSent = true
		if next == from {
			stalls++
		}
	}
}

// stream opens one stream: the real wildcard types first (a new node.cluster
// is a new group for the server), then garbage type URLs from *next to hi.
// It holds the stream until the first response arrives (or 2 s pass) and
// reports whether the job is done.
func (a *abuser) stream(ctx context.Context, conn *grpc.ClientConn, node *corev3.Node, next *int, hi int, withCluster bool) bool {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		a.fail(err)
		return false
	}
	a.strms.Add(1)
	// The receiver drains the stream; first closes on the first response,
	// done when the stream has ended (recvErr says how).
	first, done := make(chan struct{}), make(chan struct{})
	var recvErr error
	go func() {
		defer close(done)
		for n := 0; ; n++ {
			if _, err := s.Recv(); err != nil {
				recvErr = err
				return
			}
			a.resps.Add(1)
			if n == 0 {
				close(first)
			}
		}
	}()
	end := func(ok bool) bool {
		cancel()
		<-done
		if status.Code(recvErr) != codes.Canceled {
			a.fail(recvErr)
		}
		return ok
	}
	send := func(typeURL string) error {
		return s.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typeURL})
	}
	if withCluster && node.Cluster != "abuse-shared" {
		if send(typeURL[tCDS]) != nil || send(typeURL[tLDS]) != nil {
			return end(false)
		}
		a.sentC.Add(1)
	}
	for ; *next < hi; *next++ {
		if send(fmt.Sprintf("type.googleapis.com/bulwark.abuse.v1.Garbage%07d", *next)) != nil {
			return end(false)
		}
		a.sentT.Add(1)
	}
	if err := s.CloseSend(); err != nil {
		return end(false)
	}
	select {
	case <-first:
	case <-done:
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	return end(true)
}

func (a *abuser) fail(err error) {
	code := "Unknown"
	if errors.Is(err, io.EOF) {
		code = "EOF" // the server ended the stream after the client's CloseSend
	} else if s, ok := status.FromError(err); ok {
		code = s.Code().String()
	} else if errors.Is(err, context.DeadlineExceeded) {
		code = "DeadlineExceeded"
	}
	a.mu.Lock()
	a.rep.Errors[code]++
	a.mu.Unlock()
}

// sent returns how many requests have gone out so far.
func (a *abuser) sent() int64 { return a.sentT.Load() + a.sentC.Load() }

// stop ends the abusers (if they are not done) and returns their report.
func (a *abuser) stop() *abuseReport {
	a.cancel()
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.rep
	r.TypesSent, r.ClustersSent, r.Streams, r.Responses = a.sentT.Load(), a.sentC.Load(), a.strms.Load(), a.resps.Load()
	r.Seconds = secs(time.Since(a.start))
	r.Errors = make(map[string]int64, len(a.rep.Errors))
	codes := make([]string, 0, len(a.rep.Errors))
	for c := range a.rep.Errors {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, c := range codes {
		r.Errors[c] = a.rep.Errors[c]
	}
	return &r
}
