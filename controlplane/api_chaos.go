package controlplane

import (
	"net/http"

	"github.com/bulwarkmesh/bulwark/policies"
)

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

// killSwitch stops every running experiment at once.
func (cp *ControlPlane) killSwitch(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := cp.storeCtx(r)
	defer cancel()
	who := callerOf(r.Context())
	stopped, err := cp.store.StopExperiments(ctx, who)
	if err != nil {
		cp.sendError(w, r, err)
		return
	}
	if stopped == nil {
		stopped = []string{}
	}
	cp.cfg.Logger.Warn("chaos kill switch: every experiment stopped", "by", who, "stopped", stopped)
	writeJSON(w, http.StatusOK, KillSwitchResult{Stopped: stopped, StoppedBy: who})
}

// experimentHistory lists finished and running experiment runs, optionally
// only those targeting ?service=S.
func (cp *ControlPlane) experimentHistory(w http.ResponseWriter, r *http.Request) {
	svc := r.URL.Query().Get("service")
	ctx, cancel := cp.storeCtx(r)
	defer cancel()
	hist, err := cp.store.History(ctx)
	if err != nil {
		cp.sendError(w, r, err)
		return
	}
	out := make([]*policies.ChaosExperiment, 0, len(hist))
	for _, e := range hist {
		if svc == "" || e.Spec.Target.Service == svc {
			out = append(out, e)
		}
	}
	writeJSON(w, http.StatusOK, HistoryList{Items: out})
}
