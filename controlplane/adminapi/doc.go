// Package adminapi is the admin REST API of design §9: resources with
// compare-and-swap, bundle applies, endpoint self-registration, the chaos
// kill switch and history, the audit, the effective policy with the origin
// of each field, who a token is, proxies, status and config, health
// and metrics, with bearer-token roles and problem+json errors, described
// by the OpenAPI document it serves.
//
// It is written against small interfaces (Store, Applier, Fleet, Builds,
// Health; see Deps), not against the control plane, so it can be built and
// tested alone. Its bodies are the types of controlplane/api. It must not
// import the root controlplane package, gitops or the snapshot builder.
package adminapi
