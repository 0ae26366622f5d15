package controlplane

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// apiClient calls a harness's admin API over real HTTP.
type apiClient struct {
	t     *testing.T
	base  string
	token string
	http  *http.Client
}

func (h *harness) api(token string) *apiClient {
	return &apiClient{t: h.t, base: "http://" + h.cp.AdminAddr(), token: token, http: &http.Client{Timeout: 20 * time.Second}}
}

// reply is one HTTP answer.
type reply struct {
	code   int
	header http.Header
	body   []byte
}

// do sends a request; contentType "" sends no Content-Type.
func (c *apiClient) do(method, path, contentType string, body []byte, header ...string) reply {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	require.NoError(c.t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	return reply{code: resp.StatusCode, header: resp.Header, body: b}
}

func (c *apiClient) get(path string) reply { return c.do(http.MethodGet, path, "", nil) }
func (c *apiClient) putYAML(path, body string, header ...string) reply {
	return c.do(http.MethodPut, path, "application/yaml", []byte(body), header...)
}
func (c *apiClient) del(path string, header ...string) reply {
	return c.do(http.MethodDelete, path, "", nil, header...)
}
func (c *apiClient) post(path, contentType, body string) reply {
	return c.do(http.MethodPost, path, contentType, []byte(body))
}

// decode unmarshals a successful JSON answer.
func decode[T any](t *testing.T, r reply, want int) T {
	t.Helper()
	require.Equal(t, want, r.code, "body: %s", r.body)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	var v T
	require.NoError(t, json.Unmarshal(r.body, &v), "body: %s", r.body)
	return v
}

// problem checks that an answer is a problem+json of status code and returns it.
func problem(t *testing.T, r reply, code int) api.Problem {
	t.Helper()
	require.Equal(t, code, r.code, "body: %s", r.body)
	require.Equal(t, "application/problem+json", r.header.Get("Content-Type"), "body: %s", r.body)
	var p api.Problem
	require.NoError(t, json.Unmarshal(r.body, &p), "body: %s", r.body)
	require.Equal(t, code, p.Status)
	require.Equal(t, http.StatusText(code), p.Title)
	require.Contains(t, p.Type, "urn:bulwark:problem:")
	require.NotEmpty(t, p.Detail)
	return p
}

// hasViolation reports whether a problem names field.
func hasViolation(p api.Problem, field string) bool {
	for _, v := range p.Violations {
		if v.Field == field {
			return true
		}
	}
	return false
}

// writeFile writes a file under dir, creating directories.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

// writeReply and listReply are the answers as a client decodes them.
type (
	writeReply = api.WriteResult[json.RawMessage]
	listReply  = api.ResourceList[json.RawMessage]
)

// Test resources.
const (
	paymentsService = `apiVersion: bulwark/v1
kind: Service
metadata: {name: payments, labels: {tier: critical}}
spec:
  protocol: grpc
  port: 50051
  endpoints: [{address: 127.0.0.1, port: 9001}]
`
	paymentsPolicy = `apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: 3s}
`
	paymentsChaos = `apiVersion: bulwark/v1
kind: ChaosExperiment
metadata: {name: payments-503}
spec:
  target: {service: payments}
  abort: {percent: 10, grpcStatus: 14}
  duration: 10m
`
)

// etag renders a revision as the admin API's ETag.
func etag(rev int64) string { return `"` + strconv.FormatInt(rev, 10) + `"` }
