// Package xdsserver serves xDS: the ADS server (state of the world and
// delta on one gRPC port), the proxy groups and the node hash that maps a
// proxy to its group's snapshot, the snapshot cache wrapper that answers
// state-of-the-world watches with one shared answer per group and never
// resends a version a proxy rejected (the NACK guard), sealed resources
// (each encoded once per version, not once per stream), and the tracker
// that follows every stream's ACKs and NACKs.
//
// It owns what crosses the wire to proxies and what it learns from them.
// It builds nothing: snapshots come from controlplane/snapshot through
// Cache.SetSnapshot. It imports the xds translation types and the API
// types of the proxy status, and must not import the store, the admin API
// or the root controlplane package.
package xdsserver
