// Package api holds the bodies of the admin REST API: what the server
// answers and accepts, and the problem+json error format. The server
// (controlplane/adminapi) encodes them and bulwarkctl decodes them, so the
// two cannot drift apart.
//
// It owns wire types only: no behaviour beyond encoding a problem. It
// imports nothing of the control plane (only policies and xds/ir for the
// types that appear in answers), and must never import the store, the xDS
// server or any package that does I/O, so that the CLI stays small.
package api
