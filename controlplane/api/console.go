package api

import (
	"encoding/json"

	"github.com/bulwarkmesh/bulwark/policies"
)

// WhoAmI is the answer of GET /v1/whoami: who the presented token stands
// for and what it may do. The web console asks it to know whether to show
// the controls that need an editor.
type WhoAmI struct {
	// Name is who the token stands for ("anonymous" without a token file).
	Name string `json:"name"`
	// Role is "viewer" or "editor". Without a token file every caller may
	// do everything, so the role is "editor".
	Role string `json:"role"`
	// Authentication is false when the server has no token file.
	Authentication bool `json:"authentication"`
}

// Levels of a policy's target, the precedence of design §3 from low to high.
const (
	LevelMesh     = "mesh default"
	LevelSelector = "selector"
	LevelService  = "service"
	LevelRoute    = "route"
)

// EffectiveReport is the answer of GET /v1/effective: for each service the
// merged policy that calls to it get, field by field, with the policy each
// field comes from.
type EffectiveReport struct {
	Revision int64              `json:"revision"`
	Items    []EffectiveService `json:"items"`
}

// EffectiveService is the merged policy for calls from Source to Service on
// Route ("" for both means any caller that no source-scoped policy names,
// and the service's default route).
type EffectiveService struct {
	Service string `json:"service"`
	Source  string `json:"source,omitempty"`
	Route   string `json:"route,omitempty"`
	// Sources are the callers that source-scoped policies name for the
	// service, and Routes the route prefixes policies or experiments name:
	// the other views of the same service.
	Sources []string `json:"sources"`
	Routes  []string `json:"routes"`
	// Fields lists every setting in force, in the order of the policy
	// schema. Unset fields take the translation's defaults.
	Fields    []EffectiveField    `json:"fields"`
	Conflicts []policies.Conflict `json:"conflicts,omitempty"`
}

// EffectiveField is one setting of the merged policy and where it comes from.
type EffectiveField struct {
	// Field is the dotted path below spec: "retries.backoff.base".
	Field string          `json:"field"`
	Value json.RawMessage `json:"value"`
	// Policy names the ResiliencePolicy that sets it.
	Policy string `json:"policy"`
	// Level is the policy's target: mesh default, selector, service or route.
	Level string `json:"level"`
	// Sources are the callers the policy is limited to, if any.
	Sources []string `json:"sources,omitempty"`
}
