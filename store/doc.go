// Package store keeps Bulwark's resources in etcd v3: CRUD with revisions and
// compare-and-swap, atomic multi-resource applies, a watch that resumes from a
// revision and re-lists after a compaction, and the leased keys (chaos
// experiments, self-registered endpoints, proxy status).
//
// # Layout
//
// Every key lives under a prefix (default "/bulwark"):
//
//	/v1/services/<name>                       Service (JSON)
//	/v1/policies/<name>                       ResiliencePolicy (JSON)
//	/v1/experiments/<name>                    ChaosExperiment (JSON), leased for spec.duration
//	/v1/endpoints/<service>/<instance>        Endpoint (JSON), leased for its TTL
//	/v1/status/<replica>/<node>               proxy status of one replica, leased per replica
//	/v1/history/experiments/<name>/<start>    one record per run of an experiment
//	/v1/guards/<name>                         empty; its mod revision is when a guarded write last touched it (ApplyGuarded)
//	/v1/steadystate/<name>/<start>            the steady-state readings and verdict of that run (JSON)
//	/v1/xds-rejections/<node>/<type URL>      what a proxy rejected (JSON), leased per replica (RejectionTTL)
//	/v1/work/leader/<duty>/<lease>            election of a singleton duty (go.etcd.io/etcd/client/v3/concurrency)
//
// The keys sorting after "status/" are outside the watch of the resources.
// WatchStatus and WatchRejections follow the status and the rejections of
// every replica. A Load's revision (LoadContent's content revision) is that
// of the content, the newest mod revision among the keys read, not the
// store's, which status writes move.
//
// Values are the resources as JSON, exactly as the API accepts them
// (apiVersion, kind, metadata, spec, and status for experiments). A
// resource's metadata.revision is never stored: it is the key's etcd mod
// revision and is filled in when a value is read. Anyone may write these keys
// with a plain etcd client; reading is strict (unknown fields are errors), and
// a value that does not decode, or whose kind or name disagrees with its key,
// is reported and skipped without affecting the others:
//
//   - Load and List leave it out; Load returns it among its problems.
//   - Watch reports it in Event.Problems and sends no change for that key, so a
//     consumer keeps the last good version it had (a consumer that starts
//     later, or re-lists after a compaction, will not have it at all).
//
// Segments that may contain '/' (status replica and node identifiers) are
// path-escaped in keys.
//
// # Experiments
//
// An experiment key carries a lease of spec.duration (rounded up to whole
// seconds), so it ends by itself even when no Bulwark replica is running.
// Several runs of one experiment name are kept apart in the history by a
// suffix: the start time in UTC with nanoseconds
// ("2006-01-02T15:04:05.000000000Z"), which also sorts them. Starting,
// stopping, replacing and deleting an experiment write its history record in
// the same transaction as the experiment key. Writing an experiment through
// Put or Apply starts it (a running one of the same name is stopped and
// replaced, its record marked "stopped"). status.startedBy is the who given
// to StartExperiment or ApplyAs, else what the caller filled in, else
// metadata.source; a stop records status.stoppedBy. A "running" record whose
// endsAt has passed reads as "expired".
//
// etcd renews every lease to its full TTL when a leader is elected (for
// example when the embedded etcd restarts), so the lease alone could let an
// experiment outlive the end it promised. A Store with a Watch running
// therefore also ends the experiments it sees at their endsAt (a
// compare-and-delete on the revision it saw, which marks the record
// "expired"; several replicas doing so is harmless). Replica clocks should be
// kept in sync: an experiment ends by the clock of the first replica to see
// its end.
//
// # Limits
//
// An Apply is one etcd transaction: it is refused with ErrTooLarge, and
// nothing is written, when it needs more operations than Options.MaxTxnOps
// (etcd's --max-txn-ops, 128 by default; the embedded server raises it) or
// more bytes than etcd accepts in one request.
package store
