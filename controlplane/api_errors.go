package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// Problem is an error answer of the admin API (RFC 9457,
// application/problem+json). Type is a URN naming the kind of problem
// ("urn:bulwark:problem:invalid"); Violations locate bad input by field path.
type Problem struct {
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Status     int            `json:"status"`
	Detail     string         `json:"detail"`
	Violations []APIViolation `json:"violations,omitempty"`
	// Conflicts names the policies of a refused write's conflicts.
	Conflicts []policies.Conflict `json:"conflicts,omitempty"`
}

// APIViolation is one problem with the input, located by field path.
type APIViolation struct {
	Field   string `json:"field"`
	Message string `json:"message"`
	// Line is the 1-based line in the request body, when known.
	Line int `json:"line,omitempty"`
}

func (p *Problem) Error() string { return p.Detail }

// Problem types, the last segment of "urn:bulwark:problem:<type>".
const (
	problemInvalid          = "invalid"
	problemNotFound         = "not-found"
	problemMethodNotAllowed = "method-not-allowed"
	problemConflict         = "conflict"
	problemTooLarge         = "too-large"
	problemMediaType        = "unsupported-media-type"
	problemUnauthorized     = "unauthorized"
	problemForbidden        = "forbidden"
	problemStoreUnavailable = "store-unavailable"
	problemInternal         = "internal"
)

// newProblem returns a problem of a type with an HTTP status and a detail.
func newProblem(code int, typ, detail string) *Problem {
	return &Problem{Type: "urn:bulwark:problem:" + typ, Title: http.StatusText(code), Status: code, Detail: detail}
}

// invalid returns a 400 problem with violations.
func invalid(detail string, vs ...APIViolation) *Problem {
	p := newProblem(http.StatusBadRequest, problemInvalid, detail)
	p.Violations = vs
	return p
}

// fromViolations converts policy violations, prefixing their fields.
func fromViolations(prefix string, vs policies.Violations) []APIViolation {
	out := make([]APIViolation, len(vs))
	for i, v := range vs {
		f := v.Field
		if prefix != "" {
			f = strings.TrimSuffix(prefix+"."+f, ".")
		}
		out[i] = APIViolation{Field: f, Message: v.Message, Line: v.Line}
	}
	return out
}

// sendProblem writes p as application/problem+json.
func sendProblem(w http.ResponseWriter, p *Problem) {
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

// sendError answers with the problem that err stands for.
func (cp *ControlPlane) sendError(w http.ResponseWriter, r *http.Request, err error) {
	p := cp.problemOf(err)
	if p.Status >= 500 {
		cp.cfg.Logger.Error("admin API request failed", "method", r.Method, "path", r.URL.Path, "status", p.Status, "err", err)
	}
	sendProblem(w, p)
}

// problemOf maps an error of the control plane or the store to a problem.
func (cp *ControlPlane) problemOf(err error) *Problem {
	var (
		p        *Problem
		inv      *InvalidError
		vs       policies.Violations
		pc       *PolicyConflictError
		ce       *store.ConflictError
		maxBytes *http.MaxBytesError
	)
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &inv):
		return invalid(fmt.Sprintf("%d invalid field(s): %s", len(inv.Violations), inv.Violations.Error()), fromViolations("", inv.Violations)...)
	case errors.As(err, &vs):
		return invalid(vs.Error(), fromViolations("", vs)...)
	case errors.As(err, &pc):
		p := newProblem(http.StatusConflict, problemConflict, pc.Error()+"; give one policy a more specific target, or drop the field from one of them")
		p.Conflicts = pc.Conflicts
		return p
	case errors.As(err, &ce):
		detail := ce.Error()
		if ce.Expected > 0 {
			detail += "; read the resource again and retry with its current revision"
		}
		return newProblem(http.StatusConflict, problemConflict, detail)
	case errors.Is(err, store.ErrConflict):
		return newProblem(http.StatusConflict, problemConflict, err.Error())
	case errors.Is(err, store.ErrNotFound):
		return newProblem(http.StatusNotFound, problemNotFound, err.Error())
	case errors.As(err, &maxBytes):
		return newProblem(http.StatusRequestEntityTooLarge, problemTooLarge, fmt.Sprintf("request body larger than %d bytes; split the bundle into several applies", maxBytes.Limit))
	case errors.Is(err, store.ErrTooLarge):
		return newProblem(http.StatusRequestEntityTooLarge, problemTooLarge, err.Error())
	case storeUnreachable(err):
		detail := "the store (etcd) is unreachable; nothing was written and proxies keep their last good config: " + err.Error()
		if cp.health != nil {
			if up, _, reason := cp.health.storeState(); !up && reason != "" {
				detail = "the store (etcd) is unreachable; nothing was written and proxies keep their last good config (" + reason + ")"
			}
		}
		return newProblem(http.StatusServiceUnavailable, problemStoreUnavailable, detail)
	}
	return newProblem(http.StatusInternalServerError, problemInternal, err.Error())
}

// storeUnreachable reports whether err means etcd did not answer.
func storeUnreachable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrTimeout) ||
		errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) || errors.Is(err, rpctypes.ErrLeaderChanged) {
		return true
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if s, ok := status.FromError(e); ok {
			switch s.Code() {
			case codes.Unavailable, codes.DeadlineExceeded:
				return true
			}
		}
	}
	return false
}
