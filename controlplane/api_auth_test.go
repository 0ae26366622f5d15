package controlplane

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

const (
	viewerToken = "viewer-0123456789abcdef"
	editorToken = "editor-0123456789abcdef"
)

func tokenFile(t *testing.T) string {
	return writeFile(t, t.TempDir(), "tokens", "# Bulwark API tokens\n\n"+
		viewerToken+" viewer dashboards\n"+
		editorToken+"   editor   # the CI pipeline\n")
}

// Without a token: 401; unknown token: 401; a viewer reads but may not
// write (403); an editor writes; health, metrics and the OpenAPI document
// stay open.
func TestAPIAuthTokens(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.TokenFile = tokenFile(t) })

	anon := h.api("")
	p := problem(t, anon.get("/v1/services"), http.StatusUnauthorized)
	require.Contains(t, p.Detail, "Bearer")
	require.Equal(t, `Bearer realm="bulwark"`, anon.get("/v1/services").header.Get("WWW-Authenticate"))
	problem(t, anon.putYAML("/v1/services/payments", paymentsService), http.StatusUnauthorized)
	problem(t, anon.get("/v1/status"), http.StatusUnauthorized)
	for _, open := range []string{"/health/live", "/health/ready", "/metrics", "/v1/openapi.json"} {
		require.Equal(t, http.StatusOK, anon.get(open).code, open)
	}

	problem(t, h.api("not-a-token-of-the-file").get("/v1/services"), http.StatusUnauthorized)
	basic := anon.do(http.MethodGet, "/v1/services", "", nil, "Authorization", "Basic dXNlcjpwYXNz")
	problem(t, basic, http.StatusUnauthorized)

	viewer := h.api(viewerToken)
	decode[listReply](t, viewer.get("/v1/services"), http.StatusOK)
	p = problem(t, viewer.putYAML("/v1/services/payments", paymentsService), http.StatusForbidden)
	require.Contains(t, p.Detail, "viewer")
	require.Contains(t, p.Detail, "editor")
	problem(t, viewer.post("/v1/apply", "application/yaml", paymentsService), http.StatusForbidden)
	problem(t, viewer.post("/v1/experiments/stop", "", ""), http.StatusForbidden)
	stored, _, err := h.store.List(context.Background(), "Service")
	require.NoError(t, err)
	require.Empty(t, stored, "the viewer wrote nothing")

	editor := h.api(editorToken)
	decode[writeReply](t, editor.putYAML("/v1/services/payments", paymentsService), http.StatusCreated)
	decode[writeReply](t, editor.putYAML("/v1/experiments/payments-503", paymentsChaos), http.StatusCreated)
	exp := decode[map[string]any](t, viewer.get("/v1/experiments/payments-503"), http.StatusOK)
	require.Equal(t, "token@line4", exp["status"].(map[string]any)["startedBy"], "an unnamed token is recorded by its line")
	stop := decode[api.KillSwitchResult](t, editor.post("/v1/experiments/stop", "", ""), http.StatusOK)
	require.Equal(t, []string{"payments-503"}, stop.Stopped)
}

// A malformed token file stops the control plane from starting, naming the line.
func TestAPIMalformedTokenFileRefusesToStart(t *testing.T) {
	path := writeFile(t, t.TempDir(), "tokens", editorToken+" editor\n"+viewerToken+" superuser\n")
	// New refuses it, before any etcd starts.
	_, err := New(Config{
		XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", TokenFile: path,
		DataDir: filepath.Join(t.TempDir(), "etcd"), EmbeddedEtcdListen: "127.0.0.1:0", EmbeddedEtcdPeer: "127.0.0.1:0",
	})
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), "--token-file") && strings.Contains(err.Error(), ":2: unknown role \"superuser\""), err.Error())

	_, err = New(Config{AdminAddr: "0.0.0.0:18080"})
	require.ErrorContains(t, err, "--token-file")
}
