// Package fleet owns proxy status beyond this replica's memory: the Writer
// persists the proxies of this replica to the store under the replica's
// lease, coalescing changes, and the View merges them with the other
// replicas' stored status into the fleet that /v1/proxies and /v1/status
// report.
//
// It reads what controlplane/xdsserver's Tracker knows and writes through
// the store. It must not import the admin API, the snapshot builder or the
// root controlplane package.
package fleet
