package adminapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/audit"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// killSwitch stops every running experiment at once.
func (s *Server) killSwitch(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	who := callerOf(r.Context())
	stopped, err := s.Store.StopExperiments(ctx, who)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	if stopped == nil {
		stopped = []string{}
	}
	s.Logger.Warn("chaos kill switch: every experiment stopped", "by", who, "stopped", stopped)
	writeJSON(w, http.StatusOK, api.KillSwitchResult{Stopped: stopped, StoppedBy: who})
}

// experimentHistory lists finished and running experiment runs, optionally
// only those targeting ?service=S.
func (s *Server) experimentHistory(w http.ResponseWriter, r *http.Request) {
	svc := r.URL.Query().Get("service")
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	hist, err := s.Store.History(ctx)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	out := make([]*policies.ChaosExperiment, 0, len(hist))
	for _, e := range hist {
		if svc == "" || e.Spec.Target.Service == svc {
			out = append(out, e)
		}
	}
	writeJSON(w, http.StatusOK, api.HistoryList{Items: out})
}

// serveAudit answers GET /v1/audit (?service=S for one service).
func (s *Server) serveAudit(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	service := r.URL.Query().Get("service")
	set, rev, _, err := s.Store.Load(ctx)
	if err == nil && service != "" && set.Services[service] == nil {
		err = fmt.Errorf("service %q: %w", service, store.ErrNotFound)
	}
	var hist []*policies.ChaosExperiment
	if err == nil {
		hist, err = s.Store.History(ctx)
	}
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	rep := audit.Report(set, rev, hist, service, time.Now())
	s.addCircuits(r.Context(), set, rep)
	writeJSON(w, http.StatusOK, rep)
}
