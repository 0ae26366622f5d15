package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// An instance registered with a TTL of 3 s serves a real gRPC client's
// calls; keepalives hold it; when they stop, its lease ends and it leaves
// the store and the client's endpoints, and a keepalive answers 404.
func TestAPIEndpointRegistrationExpires(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	static := startBackend(t, "static", nil)
	registered := startBackend(t, "registered", nil)
	h.apply(serviceYAML("payments", static.port))
	client, _ := h.dial("checkout", "payments")
	eventually(t, 10*time.Second, func() error { _, err := call(client, time.Second, "x"); return err })

	body := fmt.Sprintf(`{"address": "127.0.0.1", "port": %d, "zone": "z1", "weight": 1, "ttlSeconds": 3}`, registered.port)
	reg := decode[api.RegistrationResult](t, c.do(http.MethodPut, "/v1/services/payments/endpoints/pod-1", "application/json", []byte(body)), http.StatusOK)
	require.Equal(t, "registered", reg.Action)
	require.Positive(t, reg.Revision)
	require.Equal(t, int64(3), reg.TTLSeconds)

	list := decode[api.EndpointList](t, c.get("/v1/services/payments/endpoints"), http.StatusOK)
	require.Len(t, list.Items, 1)
	require.Equal(t, "pod-1", list.Items[0].Endpoint.Instance)
	require.Equal(t, registered.port, list.Items[0].Endpoint.Port)
	require.Positive(t, list.Items[0].TTLSeconds)

	// Calls spread over both instances once the client has the new endpoint.
	seen := func() map[string]bool {
		out := map[string]bool{}
		for range 20 {
			if host, err := call(client, time.Second, "x"); err == nil {
				out[host] = true
			}
		}
		return out
	}
	eventually(t, 10*time.Second, func() error {
		if s := seen(); !s["registered"] {
			return fmt.Errorf("the registered instance got no call yet: %v", s)
		}
		return nil
	})

	// Keepalives hold the instance past its TTL.
	for range 3 {
		time.Sleep(1500 * time.Millisecond)
		ka := decode[api.RegistrationResult](t, c.post("/v1/services/payments/endpoints/pod-1/keepalive", "", ""), http.StatusOK)
		require.Equal(t, "renewed", ka.Action)
		require.Positive(t, ka.TTLSeconds)
	}
	ctx := context.Background()
	set, _, _, err := h.store.Load(ctx)
	require.NoError(t, err)
	require.Contains(t, set.Registered["payments"], "pod-1", "renewed past its first TTL")

	// Without keepalives it disappears from the store and from the client.
	eventually(t, 15*time.Second, func() error {
		set, _, _, err := h.store.Load(ctx)
		if err != nil {
			return err
		}
		if _, ok := set.Registered["payments"]["pod-1"]; ok {
			return fmt.Errorf("pod-1 is still registered")
		}
		return nil
	})
	eventually(t, 10*time.Second, func() error {
		before := registered.calls.Load()
		s := seen()
		if registered.calls.Load() != before || !s["static"] {
			return fmt.Errorf("the expired instance still gets calls: %v", s)
		}
		return nil
	})
	require.Empty(t, decode[api.EndpointList](t, c.get("/v1/services/payments/endpoints"), http.StatusOK).Items)
	p := problem(t, c.post("/v1/services/payments/endpoints/pod-1/keepalive", "", ""), http.StatusNotFound)
	require.Contains(t, p.Detail, "register it again")
}

// Deregistration removes an instance at once; bad registrations are 400
// with field paths; unknown services are 404.
func TestAPIEndpointRegistrationInput(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	h.apply(serviceYAML("payments", 9001))

	yamlBody := "address: 10.0.0.7\nport: 8080\nttlSeconds: 30\n"
	decode[api.RegistrationResult](t, c.do(http.MethodPut, "/v1/services/payments/endpoints/pod-2", "application/yaml", []byte(yamlBody)), http.StatusOK)
	dereg := decode[api.RegistrationResult](t, c.del("/v1/services/payments/endpoints/pod-2"), http.StatusOK)
	require.Equal(t, "deregistered", dereg.Action)
	problem(t, c.del("/v1/services/payments/endpoints/pod-2"), http.StatusNotFound)
	set, _, _, err := h.store.Load(context.Background())
	require.NoError(t, err)
	require.Empty(t, set.Registered["payments"])

	for _, tc := range []struct {
		body   string
		fields []string
	}{
		{`{"address": "", "port": 0, "ttlSeconds": 0}`, []string{"address", "port", "ttlSeconds"}},
		{`{"address": "10.0.0.7", "port": 8080, "ttlSeconds": 99999}`, []string{"ttlSeconds"}},
		{`{"address": "10.0.0.7", "port": 8080, "ttl": 30}`, []string{"ttl"}},
		{`{"address": "10.0.0.7", "port": "8080", "ttlSeconds": 30}`, []string{"port"}},
		{`{"address": "10.0.0.7", "port": 8080, "weight": -1, "ttlSeconds": 30}`, []string{"weight"}},
	} {
		p := problem(t, c.do(http.MethodPut, "/v1/services/payments/endpoints/pod-3", "application/json", []byte(tc.body)), http.StatusBadRequest)
		for _, f := range tc.fields {
			require.True(t, hasViolation(p, f), "%s: want %s in %+v", tc.body, f, p.Violations)
		}
	}
	problem(t, c.do(http.MethodPut, "/v1/services/payments/endpoints/pod 3", "application/json", []byte(`{"address": "10.0.0.7", "port": 8080, "ttlSeconds": 30}`)), http.StatusBadRequest)
	p := problem(t, c.do(http.MethodPut, "/v1/services/nowhere/endpoints/pod-3", "application/json", []byte(`{"address": "10.0.0.7", "port": 8080, "ttlSeconds": 30}`)), http.StatusNotFound)
	require.Contains(t, p.Detail, "nowhere")
	problem(t, c.do(http.MethodPut, "/v1/services/payments/endpoints/pod-3", "text/plain", []byte(`address: x`)), http.StatusUnsupportedMediaType)
}
