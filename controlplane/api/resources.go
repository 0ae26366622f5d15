package api

import "github.com/bulwarkmesh/bulwark/policies"

// ResourceList is the answer of GET /v1/{services,policies,experiments}: the
// resources of one kind, sorted by name, read at one store revision. The
// server fills R with policies.Resource; a client decodes the items as
// json.RawMessage and then with policies.DecodeStored, which knows the kinds.
type ResourceList[R any] struct {
	Kind     string `json:"kind"`
	Revision int64  `json:"revision"`
	Items    []R    `json:"items"`
}

// WriteResult is the answer to a write of one resource: what happened, the
// resource as stored (metadata.revision is the new revision) and the lint
// warnings that concern it. R is as in ResourceList.
type WriteResult[R any] struct {
	Kind     string             `json:"kind"`
	Name     string             `json:"name"`
	Action   string             `json:"action"`
	Revision int64              `json:"revision"`
	Resource R                  `json:"resource,omitempty"`
	Warnings []policies.Finding `json:"warnings"`
}

// Write actions, per resource.
const (
	ActionCreated   = "created"
	ActionUpdated   = "updated"
	ActionUnchanged = "unchanged"
	ActionDeleted   = "deleted"
	// ActionSkipped marks an experiment of a synced directory that already ran.
	ActionSkipped = "skipped"
)

// ApplyItem is what happened to one resource of an apply.
type ApplyItem struct {
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	Action   string `json:"action"`
	Revision int64  `json:"revision,omitempty"`
}

// ApplyResult is the answer of POST /v1/apply.
type ApplyResult struct {
	Revision int64              `json:"revision"`
	DryRun   bool               `json:"dryRun,omitempty"`
	Items    []ApplyItem        `json:"items"`
	Warnings []policies.Finding `json:"warnings,omitempty"`
}

// KillSwitchResult is the answer of POST /v1/experiments/stop.
type KillSwitchResult struct {
	// Stopped names the experiments that were running and are now stopped.
	Stopped []string `json:"stopped"`
	// StoppedBy is who pulled the switch, as recorded in the history.
	StoppedBy string `json:"stoppedBy"`
}

// HistoryList is the answer of GET /v1/experiments/history: every recorded
// run, newest first.
type HistoryList struct {
	Items []*policies.ChaosExperiment `json:"items"`
}

// Registration is the body of PUT /v1/services/{service}/endpoints/{instance}.
type Registration struct {
	Address string `json:"address"`
	Port    int    `json:"port"`
	Zone    string `json:"zone,omitempty"`
	Weight  int    `json:"weight,omitempty"`
	// TTLSeconds is the lease: the instance disappears when it is not
	// renewed (POST .../keepalive) within this time.
	TTLSeconds int `json:"ttlSeconds"`
}

// RegistrationResult is the answer to a registration, keepalive or deregistration.
type RegistrationResult struct {
	Service    string             `json:"service"`
	Instance   string             `json:"instance"`
	Endpoint   *policies.Endpoint `json:"endpoint,omitempty"`
	TTLSeconds int64              `json:"ttlSeconds,omitempty"`
	Revision   int64              `json:"revision,omitempty"`
	Action     string             `json:"action"`
}

// EndpointList is the answer of GET /v1/services/{service}/endpoints.
type EndpointList struct {
	Service  string               `json:"service"`
	Revision int64                `json:"revision"`
	Items    []RegisteredEndpoint `json:"items"`
}

// RegisteredEndpoint is one self-registered instance.
type RegisteredEndpoint struct {
	Service  string            `json:"service"`
	Endpoint policies.Endpoint `json:"endpoint"`
	// Revision is the mod revision of the registration.
	Revision int64 `json:"revision"`
	// TTLSeconds is what is left of the instance's lease; -1 when the key
	// carries no lease.
	TTLSeconds int64 `json:"ttlSeconds"`
}
