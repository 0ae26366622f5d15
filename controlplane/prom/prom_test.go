package prom

import (
	"context"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/prom/promtest"
)

// Queries against a real Prometheus: a vector, a scalar, NaN, a query it
// refuses (a QueryError, Prometheus still up) and a Prometheus that is gone
// (down, said in Status).
func TestClientAgainstARealPrometheus(t *testing.T) {
	srv := promtest.New(t)
	srv.Start(t, time.Second)
	c, err := New(Config{URL: srv.URL, Timeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(c.http.CloseIdleConnections)
	ctx := context.Background()

	ss, err := c.Query(ctx, `label_replace(vector(2), "job", "checkout", "", "")`, time.Time{})
	require.NoError(t, err)
	require.Len(t, ss, 1)
	require.Equal(t, 2.0, ss[0].Value)
	require.Equal(t, "checkout", ss[0].Labels["job"])

	ss, err = c.Query(ctx, `scalar(vector(0.25))`, time.Time{})
	require.NoError(t, err)
	require.Equal(t, []Sample{{Value: 0.25}}, ss)

	ss, err = c.Query(ctx, `vector(0) / vector(0)`, time.Time{})
	require.NoError(t, err)
	require.True(t, math.IsNaN(ss[0].Value))

	_, err = c.Query(ctx, `sum(rate(x[1m]`, time.Time{})
	var qe *QueryError
	require.ErrorAs(t, err, &qe)
	require.Equal(t, "bad_data", qe.Type)
	require.True(t, c.Status().Up, "a refused query is not Prometheus down")

	srv.Stop()
	_, err = c.Query(ctx, `vector(1)`, time.Time{})
	require.ErrorContains(t, err, "prometheus unreachable")
	st := c.Status()
	require.True(t, st.Configured)
	require.False(t, st.Up)
	require.Equal(t, 1, st.Failures)
	require.NotEmpty(t, st.LastSuccess)
	require.Contains(t, st.Error, "unreachable")
}

// The bearer token of --prometheus-token-file goes with every query; a
// slow Prometheus costs the query's timeout, not more.
func TestClientTokenAndTimeout(t *testing.T) {
	var got string
	slow := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Authorization")
		if r.FormValue("query") == "slow" {
			select {
			case <-slow:
			case <-r.Context().Done():
			}
			return
		}
		w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"3"]}]}}`))
	}))
	defer ts.Close()
	defer close(slow)
	tok := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tok, []byte("s3cret\n"), 0o600))
	c, err := New(Config{URL: ts.URL, TokenFile: tok, Timeout: 200 * time.Millisecond})
	require.NoError(t, err)
	defer c.http.CloseIdleConnections()
	ss, err := c.Query(context.Background(), "up", time.Time{})
	require.NoError(t, err)
	require.Equal(t, 3.0, ss[0].Value)
	require.Equal(t, "Bearer s3cret", got)
	_, err = c.Query(context.Background(), "slow", time.Time{})
	require.ErrorContains(t, err, "prometheus unreachable")
	require.False(t, c.Status().Up)

	for _, bad := range []Config{{URL: "ftp://x"}, {URL: "http://"}, {URL: ts.URL, TokenFile: "/nonexistent"}, {URL: ts.URL, CertFile: "c.pem"}} {
		_, err := New(bad)
		require.Error(t, err, "%+v", bad)
	}
}

// A templates file replaces what it sets and keeps the other defaults;
// unknown fields and templates that do not parse are refused.
func TestLoadTemplates(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "q.yaml")
		require.NoError(t, os.WriteFile(p, []byte(s), 0o600))
		return p
	}
	tm, err := LoadTemplates(write("callerLabel: service\ngrpc:\n  retryRate: \"\"\n"))
	require.NoError(t, err)
	require.Equal(t, "service", tm.CallerLabel)
	require.Empty(t, tm.GRPC.RetryRate)
	require.Equal(t, DefaultTemplates().Envoy.Latency, tm.Envoy.Latency)
	q, err := tm.Render(tm.GRPC.Latency, Vars{Service: "payments", Window: "5m", Quantile: "0.99"})
	require.NoError(t, err)
	require.Equal(t, `histogram_quantile(0.99, sum by (service, le) (rate(grpc_client_call_duration_seconds_bucket{grpc_target="xds:///payments"}[5m])))`, q)

	_, err = LoadTemplates(write("envoy:\n  latncy: x\n"))
	require.ErrorContains(t, err, "latncy")
	_, err = LoadTemplates(write("envoy:\n  latency: \"{{.Servce}}\"\n"))
	require.ErrorContains(t, err, "envoy.latency")

	require.Equal(t, "1h", Window(time.Hour))
	require.Equal(t, "5m", Window(5*time.Minute))
	require.Equal(t, "90s", Window(90*time.Second))
}
