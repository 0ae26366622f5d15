package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/bulwarkmesh/bulwark/policies"
)

// Problem is an error answer of the admin API (RFC 9457,
// application/problem+json). Type is a URN naming the kind of problem
// ("urn:bulwark:problem:invalid"); Violations locate bad input by field path.
type Problem struct {
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Status     int         `json:"status"`
	Detail     string      `json:"detail"`
	Violations []Violation `json:"violations,omitempty"`
	// Conflicts names the policies of a refused write's conflicts.
	Conflicts []policies.Conflict `json:"conflicts,omitempty"`
	// Readings are the pre-start steady-state readings of an experiment
	// refused because the system was not steady.
	Readings []policies.Reading `json:"readings,omitempty"`
}

// Violation is one problem with the input, located by field path.
type Violation struct {
	Field   string `json:"field"`
	Message string `json:"message"`
	// Line is the 1-based line in the request body, when known.
	Line int `json:"line,omitempty"`
}

// Error returns the problem's detail, so a *Problem can travel as an error.
func (p *Problem) Error() string { return p.Detail }

// Problem types, the last segment of "urn:bulwark:problem:<type>".
const (
	ProblemInvalid          = "invalid"
	ProblemNotFound         = "not-found"
	ProblemMethodNotAllowed = "method-not-allowed"
	ProblemConflict         = "conflict"
	ProblemNotSteady        = "not-steady"
	ProblemPrometheusOff    = "prometheus-off"
	ProblemPrometheusDown   = "prometheus-down"
	ProblemTooLarge         = "too-large"
	ProblemMediaType        = "unsupported-media-type"
	ProblemUnauthorized     = "unauthorized"
	ProblemForbidden        = "forbidden"
	ProblemStoreUnavailable = "store-unavailable"
	// ProblemBusy: the replica refuses the request for its load (too many
	// connections, writes that kept losing races); retry later.
	ProblemBusy     = "busy"
	ProblemInternal = "internal"
)

// Bounds on a problem, so that no input makes a large answer: at most
// policies.MaxViolations violations (and one saying there were more), each
// message and the detail cut to a length.
const (
	MaxDetailBytes  = 4096
	MaxMessageBytes = 512
)

// NewProblem returns a problem of a type with an HTTP status and a detail
// (cut to MaxDetailBytes).
func NewProblem(code int, typ, detail string) *Problem {
	return &Problem{Type: "urn:bulwark:problem:" + typ, Title: http.StatusText(code), Status: code, Detail: cut(detail, MaxDetailBytes)}
}

// Invalid returns a 400 problem with violations, bounded (see MaxDetailBytes).
func Invalid(detail string, vs ...Violation) *Problem {
	p := NewProblem(http.StatusBadRequest, ProblemInvalid, detail)
	if len(vs) > policies.MaxViolations {
		vs = append(vs[:policies.MaxViolations:policies.MaxViolations],
			Violation{Message: fmt.Sprintf("more than %d problems; fix these first", policies.MaxViolations)})
	}
	for i := range vs {
		vs[i].Field = cut(vs[i].Field, MaxMessageBytes)
		vs[i].Message = cut(vs[i].Message, MaxMessageBytes)
	}
	p.Violations = vs
	return p
}

// Summary is a detail for violations: how many of what, and the first few.
func Summary(n int, what string, vs []Violation) string {
	const shown = 5
	parts := make([]string, 0, shown)
	for _, v := range vs[:min(len(vs), shown)] {
		s := v.Message
		if v.Field != "" {
			s = v.Field + ": " + s
		}
		parts = append(parts, cut(s, MaxMessageBytes))
	}
	detail := fmt.Sprintf("%d %s: %s", n, what, strings.Join(parts, "; "))
	if len(vs) > shown {
		detail += fmt.Sprintf("; and %d more (see violations)", len(vs)-shown)
	}
	return detail
}

// cut shortens s to at most n bytes, on a character boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "… (cut)"
	end := n - len(mark)
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end] + mark
}

// FromViolations converts policy violations, prefixing their fields.
func FromViolations(prefix string, vs policies.Violations) []Violation {
	out := make([]Violation, len(vs))
	for i, v := range vs {
		f := v.Field
		if prefix != "" {
			f = strings.TrimSuffix(prefix+"."+f, ".")
		}
		out[i] = Violation{Field: f, Message: v.Message, Line: v.Line}
	}
	return out
}

// SendProblem writes p as application/problem+json.
func SendProblem(w http.ResponseWriter, p *Problem) {
	if p.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="bulwark"`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(p)
}
