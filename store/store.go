package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/bulwarkmesh/bulwark/policies"
)

// Defaults for Options.
const (
	DefaultPrefix    = "/bulwark"
	DefaultMaxTxnOps = 128 // etcd's own default for --max-txn-ops
	DefaultPageSize  = 1000
	DefaultStatusTTL = 15 * time.Second
)

// Options configure a Store.
type Options struct {
	// Prefix is where every key lives; default DefaultPrefix.
	Prefix string
	// MaxTxnOps is the etcd server's --max-txn-ops; Apply refuses larger
	// transactions with ErrTooLarge instead of letting etcd fail them.
	MaxTxnOps int
	// Logger receives reports of skipped values and watch trouble; default slog.Default().
	Logger *slog.Logger
	// PageSize bounds the keys read per range request; default DefaultPageSize.
	PageSize int
	// StatusTTL is the TTL of each replica's status lease; default DefaultStatusTTL.
	StatusTTL time.Duration
	// OnStatusLost, when set, is called (from a Store goroutine) when a
	// replica's status lease ended while the Store was open, for example after
	// etcd was unreachable for longer than StatusTTL. The status written
	// before is gone; the caller should write it again.
	OnStatusLost func(replica string)
}

// Store is Bulwark's view of etcd. It is safe for concurrent use.
type Store struct {
	cli  *clientv3.Client
	opts Options
	log  *slog.Logger
	now  func() time.Time

	// ctx lives until Close and bounds the Store's own goroutines.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	status map[string]*statusLease // by replica
	// rejections: each replica's rejection lease (see PutRejections).
	rejections map[string]clientv3.LeaseID
	closed     bool
}

// New returns a Store over an etcd client. The caller keeps ownership of the
// client and closes it after Close.
func New(cli *clientv3.Client, opts Options) *Store {
	opts.Prefix = strings.TrimRight(opts.Prefix, "/")
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if !strings.HasPrefix(opts.Prefix, "/") {
		opts.Prefix = "/" + opts.Prefix
	}
	if opts.MaxTxnOps <= 0 {
		opts.MaxTxnOps = DefaultMaxTxnOps
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	if opts.StatusTTL <= 0 {
		opts.StatusTTL = DefaultStatusTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Store{
		cli:    cli,
		opts:   opts,
		log:    opts.Logger.With("component", "store"),
		now:    time.Now,
		ctx:    ctx,
		cancel: cancel,
		status: map[string]*statusLease{},

		rejections: map[string]clientv3.LeaseID{},
	}
}

// Prefix returns the key prefix the Store works under.
func (s *Store) Prefix() string { return s.opts.Prefix }

// MaxTxnOps returns the largest number of operations the Store puts in one
// transaction.
func (s *Store) MaxTxnOps() int { return s.opts.MaxTxnOps }

// Errors returned by the Store; test for them with errors.Is.
var (
	// ErrNotFound: the resource (or endpoint, or experiment run) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a compare-and-swap failed; the error is a *ConflictError.
	ErrConflict = errors.New("revision conflict")
	// ErrTooLarge: the write does not fit in one etcd transaction.
	ErrTooLarge = errors.New("too large for one transaction")
)

// ConflictError reports a failed compare-and-swap with the revision found.
// Expected is the revision the write asked for (-1: must not exist); Actual is
// the key's current mod revision (0: it does not exist).
type ConflictError struct {
	Kind, Name       string
	Expected, Actual int64
}

func (e *ConflictError) Error() string {
	switch {
	case e.Expected < 0:
		return fmt.Sprintf("%s %q already exists (revision %d): %v", e.Kind, e.Name, e.Actual, ErrConflict)
	case e.Actual == 0:
		return fmt.Sprintf("%s %q: expected revision %d, but it does not exist: %v", e.Kind, e.Name, e.Expected, ErrConflict)
	default:
		return fmt.Sprintf("%s %q: expected revision %d, found %d: %v", e.Kind, e.Name, e.Expected, e.Actual, ErrConflict)
	}
}

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Get reads one resource; its metadata.revision is its mod revision.
func (s *Store) Get(ctx context.Context, kind, name string) (policies.Resource, error) {
	key, err := s.resourceKey(kind, name)
	if err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("get %s %q: %w", kind, name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%s %q: %w", kind, name, ErrNotFound)
	}
	r, err := s.decodeResource(resp.Kvs[0].Key, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	if e, ok := r.(*policies.ChaosExperiment); ok && err == nil && e.Status != nil {
		// A running experiment shows its steady-state readings so far.
		st, serr := s.SteadyState(ctx, name, e.Status.StartedAt)
		if serr != nil {
			return nil, serr
		}
		attachSteady(e, st)
	}
	return r, err
}

// List reads every resource of a kind, sorted by name, with the store
// revision it was read at. Values that fail to decode are logged and skipped.
func (s *Store) List(ctx context.Context, kind string) ([]policies.Resource, int64, error) {
	dir, err := s.kindDir(kind)
	if err != nil {
		return nil, 0, err
	}
	var out []policies.Resource
	rev, err := s.rangeAt(ctx, dir, clientv3.GetPrefixRangeEnd(dir), 0, func(k, v []byte, mod, _ int64) {
		r, err := s.decodeResource(k, v, mod)
		if err != nil {
			s.log.Warn("skipping a stored value that does not decode", "key", string(k), "error", err)
			return
		}
		out = append(out, r)
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", kind, err)
	}
	return out, rev, nil
}

// PingTimeout bounds Ping.
const PingTimeout = 3 * time.Second

// Ping checks that etcd answers a linearizable read (which needs a leader)
// within PingTimeout, or the context's deadline if sooner.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, PingTimeout)
	defer cancel()
	if _, err := s.cli.Get(ctx, s.opts.Prefix, clientv3.WithCountOnly()); err != nil {
		return fmt.Errorf("etcd unreachable: %w", err)
	}
	return nil
}

// Close stops the Store's goroutines and revokes its status leases, so the
// status it wrote disappears at once. It does not close the etcd client.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	leases := make([]clientv3.LeaseID, 0, len(s.status))
	for _, sl := range s.status {
		leases = append(leases, sl.id)
	}
	s.status = map[string]*statusLease{}
	s.mu.Unlock()

	s.cancel()
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var errs []error
	for _, id := range leases {
		if _, err := s.cli.Revoke(ctx, id); err != nil {
			if ctx.Err() != nil {
				// etcd is out of reach: the lease ends by itself after StatusTTL.
				s.log.Warn("could not revoke a status lease on close", "lease", fmt.Sprintf("%x", int64(id)), "error", err)
				continue
			}
			errs = append(errs, fmt.Errorf("revoke status lease %x: %w", int64(id), err))
		}
	}
	return errors.Join(errs...)
}
