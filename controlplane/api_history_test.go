package controlplane

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// The control plane records every write in the write history, through the
// API (who: the token's name) and the directory sync (who: its source), and
// GET /v1/history serves it to viewers; GET /v1/version answers too.
func TestAPIWriteHistory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "payments.yaml", paymentsService)
	tokens := writeFile(t, t.TempDir(), "tokens", viewerToken+" viewer dashboards\n"+editorToken+" editor alice\n")
	h := newHarness(t, func(c *Config) { c.TokenFile, c.SyncDir = tokens, dir })
	viewer, editor := h.api(viewerToken), h.api(editorToken)
	abs, err := filepath.Abs(dir)
	require.NoError(t, err)

	var synced api.WriteRecord
	require.Eventually(t, func() bool {
		hist := decode[api.WriteHistory](t, viewer.get("/v1/history"), http.StatusOK)
		if len(hist.Items) == 0 {
			return false
		}
		synced = hist.Items[0]
		return true
	}, 15*time.Second, 20*time.Millisecond)
	require.Equal(t, "dir:"+abs, synced.Who)
	require.Equal(t, api.OperationApply, synced.Operation)
	require.True(t, synced.Prune)
	require.Equal(t, []api.WriteItem{{Kind: "Service", Name: "payments", Action: api.ActionCreated, RevisionAfter: synced.Revision}}, synced.Items)

	put := decode[writeReply](t, editor.putYAML("/v1/policies/payments", paymentsPolicy), http.StatusCreated)
	hist := decode[api.WriteHistory](t, viewer.get("/v1/history?limit=1"), http.StatusOK)
	require.Equal(t, 1000, hist.Kept)
	require.Len(t, hist.Items, 1)
	rec := hist.Items[0]
	require.Equal(t, "alice", rec.Who)
	require.Equal(t, api.OperationPut, rec.Operation)
	require.Equal(t, put.Revision, rec.Revision)
	require.WithinDuration(t, time.Now(), rec.Time, time.Minute)

	problem(t, viewer.get("/v1/history?limit=0"), http.StatusBadRequest)
	problem(t, h.api("").get("/v1/history"), http.StatusUnauthorized)

	v := decode[api.VersionInfo](t, viewer.get("/v1/version"), http.StatusOK)
	require.NotEmpty(t, v.Version)
	require.Regexp(t, `^go1\.`, v.GoVersion)
}
