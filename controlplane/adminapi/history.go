package adminapi

import (
	"context"
	"net/http"
	"strconv"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// WriteHistory is the audit log of resource writes; *writelog.Log is one.
type WriteHistory interface {
	// Writes returns the newest limit records, newest first.
	Writes(ctx context.Context, limit int) (*api.WriteHistory, error)
}

// defaultHistoryLimit is how many records GET /v1/history returns without ?limit.
const defaultHistoryLimit = 100

// writeHistory answers GET /v1/history (?limit=N, default 100): the newest
// resource writes first.
func (s *Server) writeHistory(w http.ResponseWriter, r *http.Request) {
	limit := defaultHistoryLimit
	if q := r.URL.Query().Get("limit"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 1 {
			api.SendProblem(w, api.Invalid("limit must be a positive integer (got "+strconv.Quote(q)+")",
				api.Violation{Field: "limit", Message: "must be a positive integer"}))
			return
		}
		limit = n
	}
	if s.History == nil {
		api.SendProblem(w, api.NewProblem(http.StatusNotFound, api.ProblemNotFound, "this server keeps no write history"))
		return
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	h, err := s.History.Writes(ctx, limit)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// serveVersion answers GET /v1/version: the server's build.
func serveVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, api.BuildVersion())
}
