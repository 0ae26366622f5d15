package adminapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/bulwarkmesh/bulwark/controlplane/adminapi"
	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
	"github.com/bulwarkmesh/bulwark/store/storetest"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// The HTTP test servers, the store and the embedded etcd start goroutines;
// every test must stop them all.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Small stand-ins for the parts of a replica a handler only reads; the store
// and the applier are real.
type (
	fakeFleet struct{ proxies []api.ProxyStatus }
	// fakeBuilds reports a fixed revision and problems.
	fakeBuilds struct {
		revision int64
		problems []api.BuildProblem
	}
	fakeHealth struct {
		ready   api.Readiness
		storeUp bool
	}
)

func (f *fakeFleet) Proxies(context.Context) []api.ProxyStatus { return f.proxies }
func (f *fakeFleet) Partial() (bool, string)                   { return false, "" }
func (f *fakeFleet) Local(id string) (api.ProxyStatus, bool) {
	for _, p := range f.proxies {
		if p.ID == id {
			return p, true
		}
	}
	return api.ProxyStatus{}, false
}

func (f *fakeBuilds) Published(string) *translate.Resources { return nil }
func (f *fakeBuilds) Set() (*policies.Set, int64)           { return policies.NewSet(), f.revision }
func (f *fakeBuilds) Revision() int64                       { return f.revision }
func (f *fakeBuilds) Problems() []api.BuildProblem          { return f.problems }

func (f *fakeHealth) Readiness() api.Readiness { return f.ready }
func (f *fakeHealth) StoreState() (bool, bool, string) {
	if f.storeUp {
		return true, true, ""
	}
	return false, true, "etcd did not answer"
}

// env is the admin API over a real store and applier, served over HTTP.
type env struct {
	url    string
	client *http.Client
	st     *store.Store
	fleet  *fakeFleet
	builds *fakeBuilds
	health *fakeHealth
}

func newEnv(t *testing.T, tokens adminapi.Tokens) *env {
	t.Helper()
	srv := storetest.NewServer(t)
	cli := storetest.NewClient(t, srv)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := store.New(cli, store.Options{Logger: log, MaxTxnOps: srv.MaxTxnOps()})
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	e := &env{
		st:     st,
		fleet:  &fakeFleet{},
		builds: &fakeBuilds{},
		health: &fakeHealth{ready: api.Readiness{Ready: true}, storeUp: true},
	}
	s := adminapi.New(adminapi.Deps{
		Store: st, Applier: apply.New(st, policies.ValidateOptions{}),
		Fleet: e.fleet, Builds: e.builds, Health: e.health,
		Metrics: http.NotFoundHandler(), Tokens: tokens, Replica: "test", Logger: log,
	})
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	e.url, e.client = hs.URL, hs.Client()
	return e
}

// reply is one HTTP answer.
type reply struct {
	code   int
	header http.Header
	body   []byte
}

// do sends a request; header holds name, value pairs.
func (e *env) do(t *testing.T, method, path, token, contentType, body string, header ...string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.url+path, bytes.NewReader([]byte(body)))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return reply{code: resp.StatusCode, header: resp.Header, body: b}
}

func decodeJSON[T any](t *testing.T, r reply, want int) T {
	t.Helper()
	require.Equal(t, want, r.code, "body: %s", r.body)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	var v T
	require.NoError(t, json.Unmarshal(r.body, &v), "body: %s", r.body)
	return v
}

// problem checks that r is a problem+json of status code.
func problem(t *testing.T, r reply, code int, typ string) api.Problem {
	t.Helper()
	require.Equal(t, code, r.code, "body: %s", r.body)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"), "body: %s", r.body)
	var p api.Problem
	require.NoError(t, json.Unmarshal(r.body, &p), "body: %s", r.body)
	require.Equal(t, code, p.Status)
	require.Equal(t, http.StatusText(code), p.Title)
	require.Equal(t, "urn:bulwark:problem:"+typ, p.Type)
	require.NotEmpty(t, p.Detail)
	return p
}

func etagOf(t *testing.T, r reply) int64 {
	t.Helper()
	v := r.header.Get("ETag")
	require.NotEmpty(t, v, "no ETag")
	rev, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64)
	require.NoError(t, err, "ETag %q", v)
	return rev
}

func serviceYAML(port string) string {
	return `apiVersion: bulwark/v1
kind: Service
metadata: {name: payments}
spec:
  protocol: grpc
  port: 50051
  endpoints: [{address: 127.0.0.1, port: ` + port + `}]
`
}

type writeReply = api.WriteResult[json.RawMessage]

// A resource is created (201 with its revision as ETag), read with the same
// ETag, replaced with the current If-Match, and refused with a stale one
// (409); a missing one is a 404 problem.
func TestAPIResourceWritesWithCompareAndSwap(t *testing.T) {
	e := newEnv(t, nil)

	created := e.do(t, http.MethodPut, "/v1/services/payments", "", "application/yaml", serviceYAML("9001"))
	w := decodeJSON[writeReply](t, created, http.StatusCreated)
	require.Equal(t, api.ActionCreated, w.Action)
	rev := etagOf(t, created)
	require.Equal(t, w.Revision, rev)
	stored, err := e.st.Get(t.Context(), policies.KindService, "payments")
	require.NoError(t, err)
	require.Equal(t, rev, stored.GetMeta().Revision, "written to the store")

	got := e.do(t, http.MethodGet, "/v1/services/payments", "", "", "")
	svc := decodeJSON[policies.Service](t, got, http.StatusOK)
	require.Equal(t, rev, etagOf(t, got))
	require.Equal(t, "payments", svc.Metadata.Name)
	require.Equal(t, 9001, svc.Spec.Endpoints[0].Port)

	updated := e.do(t, http.MethodPut, "/v1/services/payments", "", "application/yaml", serviceYAML("9002"), "If-Match", `"`+strconv.FormatInt(rev, 10)+`"`)
	require.Equal(t, api.ActionUpdated, decodeJSON[writeReply](t, updated, http.StatusOK).Action)
	newRev := etagOf(t, updated)
	require.Greater(t, newRev, rev)

	stale := e.do(t, http.MethodPut, "/v1/services/payments", "", "application/yaml", serviceYAML("9003"), "If-Match", `"`+strconv.FormatInt(rev, 10)+`"`)
	p := problem(t, stale, http.StatusConflict, api.ProblemConflict)
	require.Contains(t, p.Detail, strconv.FormatInt(newRev, 10), "the conflict names the current revision")
	stored, err = e.st.Get(t.Context(), policies.KindService, "payments")
	require.NoError(t, err)
	require.Equal(t, 9002, stored.(*policies.Service).Spec.Endpoints[0].Port, "a refused write writes nothing")

	list := decodeJSON[api.ResourceList[json.RawMessage]](t, e.do(t, http.MethodGet, "/v1/services", "", "", ""), http.StatusOK)
	require.Len(t, list.Items, 1)
	require.GreaterOrEqual(t, list.Revision, newRev)

	problem(t, e.do(t, http.MethodGet, "/v1/services/ledger", "", "", ""), http.StatusNotFound, api.ProblemNotFound)
	problem(t, e.do(t, http.MethodPut, "/v1/services/payments", "", "", serviceYAML("9003")), http.StatusUnsupportedMediaType, api.ProblemMediaType)
	inv := problem(t, e.do(t, http.MethodPut, "/v1/services/payments", "", "application/yaml", strings.Replace(serviceYAML("9003"), "port: 9003", "port: 0", 1)), http.StatusBadRequest, api.ProblemInvalid)
	require.NotEmpty(t, inv.Violations)

	deleted := decodeJSON[writeReply](t, e.do(t, http.MethodDelete, "/v1/services/payments", "", "", ""), http.StatusOK)
	require.Equal(t, api.ActionDeleted, deleted.Action)
	problem(t, e.do(t, http.MethodDelete, "/v1/services/payments", "", "", ""), http.StatusNotFound, api.ProblemNotFound)
}

// GET /v1/status reports what health, builds and the fleet say;
// /health/ready follows readiness.
func TestAPIStatusReflectsHealth(t *testing.T) {
	e := newEnv(t, nil)
	e.builds.revision = 7
	e.builds.problems = []api.BuildProblem{{Group: "envoy/checkout", Message: "service ledger left out"}}
	e.fleet.proxies = []api.ProxyStatus{{ID: "a", Converged: true}, {ID: "b"}}

	st := decodeJSON[api.StatusReport](t, e.do(t, http.MethodGet, "/v1/status", "", "", ""), http.StatusOK)
	require.True(t, st.Ready)
	require.True(t, st.StoreUp)
	require.Equal(t, int64(7), st.Revision)
	require.Equal(t, "test", st.Replica)
	require.Equal(t, e.builds.problems, st.Problems)
	require.Equal(t, api.Rollout{Total: 2, Converged: 1, Pending: 1}, st.Rollout)
	require.Nil(t, st.Sync, "no directory sync")
	require.Equal(t, http.StatusOK, e.do(t, http.MethodGet, "/health/ready", "", "", "").code)

	e.health.ready = api.Readiness{Ready: false, Reasons: []string{"store unreachable for 3s"}}
	e.health.storeUp = false
	st = decodeJSON[api.StatusReport](t, e.do(t, http.MethodGet, "/v1/status", "", "", ""), http.StatusOK)
	require.False(t, st.Ready)
	require.False(t, st.StoreUp)
	require.Equal(t, []string{"store unreachable for 3s"}, st.Reasons)
	ready := decodeJSON[api.Readiness](t, e.do(t, http.MethodGet, "/health/ready", "", "", ""), http.StatusServiceUnavailable)
	require.Equal(t, e.health.ready, ready)

	proxies := decodeJSON[api.ProxyList](t, e.do(t, http.MethodGet, "/v1/proxies", "", "", ""), http.StatusOK)
	require.Len(t, proxies.Items, 2)
}

// Unknown paths and wrong methods answer in problem+json too.
func TestAPIUnknownPathsAreProblems(t *testing.T) {
	e := newEnv(t, nil)
	for _, path := range []string{"/v1/nowhere", "/", "/v1/services/payments/extra/segments"} {
		p := problem(t, e.do(t, http.MethodGet, path, "", "", ""), http.StatusNotFound, api.ProblemNotFound)
		require.Contains(t, p.Detail, path)
	}
	r := e.do(t, http.MethodDelete, "/v1/status", "", "", "")
	problem(t, r, http.StatusMethodNotAllowed, api.ProblemMethodNotAllowed)
	require.Contains(t, r.header.Get("Allow"), http.MethodGet)
}

// With a token file, viewers read and editors write; no token, or an
// unknown one, is a 401; open routes stay open.
func TestAPITokenRoles(t *testing.T) {
	const (
		viewer = "viewer-token-0123456789"
		editor = "editor-token-0123456789"
	)
	file := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(file, []byte(viewer+" viewer\n"+editor+" editor ci\n"), 0o600))
	tokens, err := adminapi.LoadTokens(file)
	require.NoError(t, err)
	e := newEnv(t, tokens)

	p := problem(t, e.do(t, http.MethodPut, "/v1/services/payments", viewer, "application/yaml", serviceYAML("9001")), http.StatusForbidden, api.ProblemForbidden)
	require.Contains(t, p.Detail, "editor")
	_, err = e.st.Get(t.Context(), policies.KindService, "payments")
	require.ErrorIs(t, err, store.ErrNotFound, "a refused write writes nothing")

	for _, tc := range []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"no token", http.MethodGet, "/v1/status", "", "", http.StatusUnauthorized},
		{"unknown token", http.MethodGet, "/v1/status", "unknown-token-0123456789", "", http.StatusUnauthorized},
		{"viewer reads", http.MethodGet, "/v1/status", viewer, "", http.StatusOK},
		{"editor writes", http.MethodPut, "/v1/services/payments", editor, serviceYAML("9001"), http.StatusCreated},
		{"editor reads", http.MethodGet, "/v1/services/payments", editor, "", http.StatusOK},
		{"viewer reads a resource", http.MethodGet, "/v1/services/payments", viewer, "", http.StatusOK},
		{"viewer deletes", http.MethodDelete, "/v1/services/payments", viewer, "", http.StatusForbidden},
		{"health is open", http.MethodGet, "/health/live", "", "", http.StatusOK},
		{"the API document is open", http.MethodGet, "/v1/openapi.json", "", "", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct := ""
			if tc.body != "" {
				ct = "application/yaml"
			}
			r := e.do(t, tc.method, tc.path, tc.token, ct, tc.body)
			require.Equal(t, tc.want, r.code, "body: %s", r.body)
			switch tc.want {
			case http.StatusUnauthorized:
				problem(t, r, tc.want, api.ProblemUnauthorized)
				require.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")
			case http.StatusForbidden:
				problem(t, r, tc.want, api.ProblemForbidden)
			}
		})
	}
	_, err = e.st.Get(t.Context(), policies.KindService, "payments")
	require.NoError(t, err, "the editor's write and not the viewer's delete")
}
