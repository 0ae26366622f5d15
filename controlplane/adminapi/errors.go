package adminapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// sendError answers with the problem that err stands for.
func (s *Server) sendError(w http.ResponseWriter, r *http.Request, err error) {
	p := s.problemOf(err)
	if p.Status >= 500 {
		s.Logger.Error("admin API request failed", "method", r.Method, "path", r.URL.Path, "status", p.Status, "err", err)
	}
	api.SendProblem(w, p)
}

// problemOf maps an error of the control plane or the store to a problem.
func (s *Server) problemOf(err error) *api.Problem {
	var (
		p        *api.Problem
		inv      *apply.InvalidError
		vs       policies.Violations
		pc       *apply.PolicyConflictError
		own      *apply.OwnedError
		ce       *store.ConflictError
		maxBytes *http.MaxBytesError
	)
	switch {
	case errors.As(err, &p):
		return p
	case errors.As(err, &inv):
		avs := api.FromViolations("", inv.Violations.Bounded())
		return api.Invalid(api.Summary(len(inv.Violations), "invalid field(s)", avs), avs...)
	case errors.As(err, &vs):
		avs := api.FromViolations("", vs.Bounded())
		return api.Invalid(api.Summary(len(vs), "invalid field(s)", avs), avs...)
	case errors.As(err, &pc):
		p := api.NewProblem(http.StatusConflict, api.ProblemConflict, pc.Error()+"; give one policy a more specific target, or drop the field from one of them")
		p.Conflicts = pc.Conflicts
		return p
	case errors.As(err, &own):
		return api.NewProblem(http.StatusConflict, api.ProblemConflict, joinedDetail(err))
	case errors.Is(err, apply.ErrBusy):
		return api.NewProblem(http.StatusServiceUnavailable, api.ProblemBusy, err.Error())
	case errors.As(err, &ce):
		detail := joinedDetail(err)
		if ce.Expected > 0 {
			detail += "; read the resource again and retry with its current revision"
		}
		return api.NewProblem(http.StatusConflict, api.ProblemConflict, detail)
	case errors.Is(err, store.ErrConflict):
		return api.NewProblem(http.StatusConflict, api.ProblemConflict, err.Error())
	case errors.Is(err, store.ErrNotFound):
		return api.NewProblem(http.StatusNotFound, api.ProblemNotFound, err.Error())
	case errors.As(err, &maxBytes):
		return api.NewProblem(http.StatusRequestEntityTooLarge, api.ProblemTooLarge, fmt.Sprintf("request body larger than %d bytes; split the bundle into several applies", maxBytes.Limit))
	case errors.Is(err, store.ErrTooLarge):
		return api.NewProblem(http.StatusRequestEntityTooLarge, api.ProblemTooLarge, err.Error())
	case store.Unreachable(err):
		return s.storeProblem(err)
	}
	return api.NewProblem(http.StatusInternalServerError, api.ProblemInternal, err.Error())
}

// storeProblem is the 503 of a store that did not answer. A write that
// reached etcd and got no answer may have been committed: its detail says
// the outcome is unknown rather than that nothing was written.
func (s *Server) storeProblem(err error) *api.Problem {
	what := "nothing was written"
	if errors.Is(err, store.ErrOutcomeUnknown) {
		what = "the outcome of the write is unknown: it may or may not have been committed; read the resource back before retrying (or retry with If-Match)"
	}
	detail := "the store (etcd) is unreachable; " + what + "; proxies keep their last good config: " + err.Error()
	if s.Health != nil {
		if up, _, reason := s.Health.StoreState(); !up && reason != "" {
			detail = "the store (etcd) is unreachable; " + what + "; proxies keep their last good config (" + reason + ")"
		}
	}
	return api.NewProblem(http.StatusServiceUnavailable, api.ProblemStoreUnavailable, detail)
}

// joinedDetail is the detail of an error that may join several (one per
// resource of a bundle): each on its own, separated by "; ".
func joinedDetail(err error) string {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts := make([]string, 0, len(j.Unwrap()))
		for _, e := range j.Unwrap() {
			parts = append(parts, e.Error())
		}
		return strings.Join(parts, "; ")
	}
	return err.Error()
}
