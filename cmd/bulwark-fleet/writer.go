package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// Ways to write.
const (
	viaAPI   = "api"   // the admin REST API
	viaStore = "store" // the resource JSON under its etcd key (design §7)
)

// writer writes resources through the admin REST API or, when its write
// endpoints are not there, straight into etcd under the keys the control
// plane watches.
type writer struct {
	via   string
	admin string
	token string
	http  *http.Client
	st    *store.Store
	close func()
}

// newWriter picks the way to write: mode "api", "etcd", or "auto" (the API
// when GET /v1/policies answers, etcd otherwise). st is a store to use for
// etcd writes (embedded control plane); without it an etcd client to
// etcdEndpoint is opened.
func newWriter(ctx context.Context, mode, admin, token string, st *store.Store, etcdEndpoint, prefix string) (*writer, error) {
	w := &writer{admin: admin, token: token, http: &http.Client{Timeout: 60 * time.Second}, close: func() {}}
	useAPI := mode == viaAPI
	if mode == "auto" {
		code, _, err := w.do(ctx, http.MethodGet, "/v1/policies", "", nil)
		useAPI = err == nil && code == http.StatusOK
	}
	if useAPI {
		w.via = viaAPI
		return w, nil
	}
	if mode != "auto" && mode != "etcd" {
		return nil, fmt.Errorf("--write-via must be auto, api or etcd, got %q", mode)
	}
	w.via = viaStore
	if st != nil {
		w.st = st
		return w, nil
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdEndpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", etcdEndpoint, err)
	}
	w.st = store.New(cli, store.Options{Prefix: prefix})
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := w.st.Ping(pctx); err != nil {
		w.st.Close()
		cli.Close()
		return nil, fmt.Errorf("the REST API has no write endpoints and etcd at %s does not answer: %w", etcdEndpoint, err)
	}
	w.close = func() {
		w.st.Close()
		cli.Close()
	}
	return w, nil
}

func (w *writer) do(ctx context.Context, method, path, contentType string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, w.admin+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if w.token != "" {
		req.Header.Set("Authorization", "Bearer "+w.token)
	}
	resp, err := w.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	return resp.StatusCode, b, err
}

// revisionOf finds the store revision in an API answer: "revision" at the
// top, or metadata.revision of the resource written.
func revisionOf(b []byte) int64 {
	var v struct {
		Revision int64 `json:"revision"`
		Metadata struct {
			Revision int64 `json:"revision"`
		} `json:"metadata"`
	}
	if json.Unmarshal(b, &v) != nil {
		return 0
	}
	return max(v.Revision, v.Metadata.Revision)
}

func apiError(what string, code int, b []byte) error {
	return fmt.Errorf("%s: HTTP %d: %s", what, code, strings.TrimSpace(string(b)))
}

// put writes one resource and returns the store revision of the write.
func (w *writer) put(ctx context.Context, r policies.Resource) (int64, error) {
	if w.via == viaStore {
		return w.st.Put(ctx, r, 0)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	path := "/v1/" + kindPath(r.GetKind()) + "/" + url.PathEscape(r.GetMeta().Name)
	code, body, err := w.do(ctx, http.MethodPut, path, "application/json", b)
	if err != nil {
		return 0, err
	}
	if code/100 != 2 {
		return 0, apiError("PUT "+path, code, body)
	}
	return revisionOf(body), nil
}

// apply writes resources in one atomic apply.
func (w *writer) apply(ctx context.Context, rs []policies.Resource) (int64, error) {
	if w.via == viaStore {
		ops := make([]store.Op, len(rs))
		for i, r := range rs {
			ops[i] = store.Op{Put: r}
		}
		return w.st.Apply(ctx, ops)
	}
	b, err := json.Marshal(map[string]any{"items": rs})
	if err != nil {
		return 0, err
	}
	code, body, err := w.do(ctx, http.MethodPost, "/v1/apply", "application/json", b)
	if err != nil {
		return 0, err
	}
	if code/100 != 2 {
		return 0, apiError("POST /v1/apply", code, body)
	}
	return revisionOf(body), nil
}

// list returns every resource of a kind.
func (w *writer) list(ctx context.Context, kind string) ([]policies.Resource, error) {
	if w.via == viaStore {
		rs, _, err := w.st.List(ctx, kind)
		return rs, err
	}
	path := "/v1/" + kindPath(kind)
	code, body, err := w.do(ctx, http.MethodGet, path, "", nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, apiError("GET "+path, code, body)
	}
	var page struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	out := make([]policies.Resource, 0, len(page.Items))
	for _, raw := range page.Items {
		var r policies.Resource
		switch kind {
		case policies.KindService:
			r = &policies.Service{}
		case policies.KindPolicy:
			r = &policies.ResiliencePolicy{}
		default:
			return nil, fmt.Errorf("cannot list %s", kind)
		}
		if err := json.Unmarshal(raw, r); err != nil {
			return nil, fmt.Errorf("GET %s: %w", path, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func kindPath(kind string) string {
	switch kind {
	case policies.KindService:
		return "services"
	case policies.KindPolicy:
		return "policies"
	}
	return "experiments"
}

// serviceNames returns the names of every service, sorted.
func (w *writer) serviceNames(ctx context.Context) ([]string, error) {
	rs, err := w.list(ctx, policies.KindService)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.GetMeta().Name
	}
	slices.Sort(names)
	return names, nil
}

// seed writes services svc-00000 … and a policy for each, in chunks, and
// returns the revision of the last write. Services that exist are
// overwritten with the same content.
func (w *writer) seed(ctx context.Context, from, to int) (int64, error) {
	chunk := 200 // resources per atomic apply: well within etcd's limits
	if w.st != nil {
		chunk = min(chunk, w.st.MaxTxnOps())
	}
	var batch []policies.Resource
	var rev int64
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		r, err := w.apply(ctx, batch)
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		rev, batch = r, batch[:0]
		return nil
	}
	for i := from; i < to; i++ {
		svc, pol := seedService(i), seedPolicy(seedName(i))
		for _, r := range []policies.Resource{svc, pol} {
			if vs := policies.Validate(r, policies.ValidateOptions{}); len(vs) > 0 {
				return 0, fmt.Errorf("seed %s %s: %w", r.GetKind(), r.GetMeta().Name, vs)
			}
		}
		batch = append(batch, svc, pol)
		if len(batch) >= chunk {
			if err := flush(); err != nil {
				return 0, err
			}
		}
	}
	return rev, flush()
}

func seedName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// seedService is a plain HTTP service with two static endpoints.
func seedService(i int) *policies.Service {
	ip := func(n int) string { return fmt.Sprintf("10.%d.%d.%d", 1+i/65536%200, i/256%256, n) }
	return &policies.Service{
		TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindService},
		Metadata: policies.Metadata{Name: seedName(i), Labels: map[string]string{"tier": "standard"}},
		Spec: policies.ServiceSpec{
			Protocol: policies.ProtocolHTTP, Port: 8080,
			Endpoints: []policies.Endpoint{
				{Address: ip(10), Port: 8080, Zone: "z1", Weight: 1},
				{Address: ip(11), Port: 8080, Zone: "z2", Weight: 1},
			},
		},
	}
}

// seedPolicy is the kind of policy a careful team writes: a timeout,
// bounded retries with backoff and a budget, a circuit breaker, a bulkhead.
func seedPolicy(service string) *policies.ResiliencePolicy {
	d := policies.Dur
	return &policies.ResiliencePolicy{
		TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindPolicy},
		Metadata: policies.Metadata{Name: service},
		Spec: policies.PolicySpec{
			Target:   policies.Target{Service: service},
			Timeouts: &policies.Timeouts{Connect: d(time.Second), Request: d(3 * time.Second)},
			Retries: &policies.Retries{
				Attempts: policies.Ptr(2), PerTryTimeout: d(time.Second),
				On: []string{"5xx", "reset", "connect-failure"}, Methods: []string{"GET", "PUT", "DELETE"},
				Backoff: &policies.Backoff{Base: d(25 * time.Millisecond), Max: d(250 * time.Millisecond)},
				Budget:  &policies.Budget{Percent: policies.Ptr(20.0), MinConcurrency: policies.Ptr(3)},
			},
			CircuitBreaker: &policies.CircuitBreaker{
				Consecutive5xx: policies.Ptr(5), Interval: d(10 * time.Second),
				BaseEjectionTime: d(30 * time.Second), MaxEjectionPercent: policies.Ptr(50),
			},
			Bulkhead: &policies.Bulkhead{MaxConnections: policies.Ptr(100), MaxPendingRequests: policies.Ptr(50), MaxRequests: policies.Ptr(200)},
		},
	}
}

// flipper is the built-in change: it sets the request timeout of a service
// in the policy that targets that service alone (no route, no sources),
// creating "fleet-<service>" when there is none. Policies are looked up once
// and then changed from memory, so a fast stream of writes costs one write
// each. It is safe for concurrent use; writes to one target are serialized.
type flipper struct {
	w       *writer
	targets map[string]*flipTarget
}

type flipTarget struct {
	mu     sync.Mutex
	policy *policies.ResiliencePolicy
}

func newFlipper(ctx context.Context, w *writer, targets []string) (*flipper, error) {
	f := &flipper{w: w, targets: map[string]*flipTarget{}}
	rs, err := w.list(ctx, policies.KindPolicy)
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	for _, t := range targets {
		var found *policies.ResiliencePolicy
		for _, r := range rs {
			p := r.(*policies.ResiliencePolicy)
			if p.Spec.Target.Service == t && p.Spec.Target.Route == nil && len(p.Spec.Sources) == 0 {
				if found == nil || p.Metadata.Name < found.Metadata.Name {
					found = p
				}
			}
		}
		if found == nil {
			found = &policies.ResiliencePolicy{
				TypeMeta: policies.TypeMeta{APIVersion: policies.APIVersion, Kind: policies.KindPolicy},
				Metadata: policies.Metadata{Name: "fleet-" + t},
				Spec:     policies.PolicySpec{Target: policies.Target{Service: t}},
			}
		}
		f.targets[t] = &flipTarget{policy: found}
	}
	return f, nil
}

// The built-in changes (--change).
const (
	changeRoute   = "route"
	changeCluster = "cluster"
)

// flipCluster flips a target's bulkhead maxConnections between 100 and
// 101: the circuit breaker thresholds of its cluster, nothing else.
func (f *flipper) flipCluster(ctx context.Context, target string) (int64, error) {
	return f.edit(ctx, target, func(spec *policies.PolicySpec) {
		b := policies.Bulkhead{}
		if spec.Bulkhead != nil {
			b = *spec.Bulkhead
		}
		n := 100
		if b.MaxConnections != nil && *b.MaxConnections == 100 {
			n = 101
		}
		b.MaxConnections = policies.Ptr(n)
		spec.Bulkhead = &b
	})
}

// flip flips a target's request timeout between 3s and 4s and returns the
// revision of the write.
func (f *flipper) flip(ctx context.Context, target string) (int64, error) {
	return f.update(ctx, target, func(cur *policies.Duration) policies.Duration {
		if cur != nil && *cur == policies.Duration(3*time.Second) {
			return policies.Duration(4 * time.Second)
		}
		return policies.Duration(3 * time.Second)
	})
}

// set sets a target's request timeout.
func (f *flipper) set(ctx context.Context, target string, d time.Duration) (int64, error) {
	return f.update(ctx, target, func(*policies.Duration) policies.Duration { return policies.Duration(d) })
}

func (f *flipper) update(ctx context.Context, target string, next func(*policies.Duration) policies.Duration) (int64, error) {
	return f.edit(ctx, target, func(spec *policies.PolicySpec) {
		t := policies.Timeouts{}
		if spec.Timeouts != nil {
			t = *spec.Timeouts
		}
		to := next(t.Request)
		t.Request = &to
		spec.Timeouts = &t
	})
}

// edit writes a target's policy changed by fn (on a copy of its spec).
func (f *flipper) edit(ctx context.Context, target string, fn func(*policies.PolicySpec)) (int64, error) {
	ft := f.targets[target]
	if ft == nil {
		return 0, errors.New("no policy for " + target)
	}
	ft.mu.Lock()
	defer ft.mu.Unlock()
	c := *ft.policy
	spec := c.Spec
	fn(&spec)
	c.Spec = spec
	c.Metadata.Revision = 0
	rev, err := f.w.put(ctx, &c)
	if err != nil {
		return 0, err
	}
	ft.policy = &c
	return rev, nil
}

// changeFile is a change read from --change-file: one policy is PUT, a
// bundle is applied atomically.
func changeFile(ctx context.Context, w *writer, data []byte) (int64, error) {
	rs, err := policies.DecodeAll(data)
	if err != nil {
		return 0, fmt.Errorf("--change-file: %w", err)
	}
	if len(rs) == 0 {
		return 0, errors.New("--change-file holds no resource")
	}
	if len(rs) == 1 {
		return w.put(ctx, rs[0])
	}
	return w.apply(ctx, rs)
}
