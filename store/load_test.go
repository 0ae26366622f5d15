package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
)

// The JSON of design §3, as a plain etcd client would write it.
const (
	blackBoxService = `{"apiVersion":"bulwark/v1","kind":"Service","metadata":{"name":"payments","labels":{"tier":"critical"}},
"spec":{"protocol":"http","port":8080,"endpoints":[{"address":"127.0.0.1","port":9001,"zone":"z1","weight":1}],"dependencies":["ledger","fraud"]}}`
	blackBoxPolicy = `{"apiVersion":"bulwark/v1","kind":"ResiliencePolicy","metadata":{"name":"payments"},
"spec":{"target":{"service":"payments"},"sources":["checkout"],
"timeouts":{"connect":"1s","request":"3s","idle":"60s"},
"retries":{"attempts":2,"perTryTimeout":"1s","on":["5xx","gateway-error","reset","connect-failure","refused-stream","unavailable"],
 "statusCodes":[503],"methods":["GET","PUT","DELETE"],"backoff":{"base":"25ms","max":"250ms"},"budget":{"percent":20,"minConcurrency":3}},
"circuitBreaker":{"consecutive5xx":5,"consecutiveGatewayErrors":3,"failurePercentage":{"threshold":50,"minimumHosts":3,"requestVolume":20},
 "successRate":{"stdevFactor":1.9,"minimumHosts":3,"requestVolume":100},"interval":"10s","baseEjectionTime":"30s","maxEjectionPercent":50},
"bulkhead":{"maxConnections":100,"maxPendingRequests":50,"maxRequests":200,"maxRetries":3,"maxRequestsPerConnection":1000},
"healthCheck":{"http":{"path":"/health/ready","expectedStatuses":[200]},"interval":"5s","timeout":"1s","unhealthyThreshold":3,"healthyThreshold":2},
"fallback":{"service":"payments-static"}}}`
	blackBoxExperiment = `{"apiVersion":"bulwark/v1","kind":"ChaosExperiment","metadata":{"name":"payments-503"},
"spec":{"target":{"service":"payments"},"sources":["checkout"],"headers":{"x-chaos":"on"},"abort":{"percent":10,"httpStatus":503},
"delay":{"percent":5,"fixed":"2s"},"duration":"10m","hypothesis":"checkout's error rate stays under 1% thanks to the fallback"}}`
	blackBoxEndpoint = `{"address":"10.0.0.9","port":8080,"zone":"z2","weight":3}`
)

func TestLoadReadsPlainEtcdWritesAndSkipsBadValues(t *testing.T) {
	e := newEnv(t, Options{PageSize: 2}) // several pages, one revision
	ctx := testCtx(t)
	kv := map[string]string{
		"/bulwark/v1/services/payments":              blackBoxService,
		"/bulwark/v1/policies/payments":              blackBoxPolicy,
		"/bulwark/v1/experiments/payments-503":       blackBoxExperiment,
		"/bulwark/v1/endpoints/payments/pod-9":       blackBoxEndpoint,
		"/bulwark/v1/history/experiments/x/whatever": `not even json`, // not loaded
		"/bulwark/v1/status/r1/n1":                   `{}`,            // not loaded
		// Bad values: each reported, none fatal.
		"/bulwark/v1/services/typo":        `{"apiVersion":"bulwark/v1","kind":"Service","metadata":{"name":"typo"},"spec":{"port":80,"protocl":"http"}}`,
		"/bulwark/v1/services/not-json":    `{"apiVersion":`,
		"/bulwark/v1/services/other-name":  `{"apiVersion":"bulwark/v1","kind":"Service","metadata":{"name":"someone"},"spec":{"port":80}}`,
		"/bulwark/v1/policies/wrong-kind":  `{"apiVersion":"bulwark/v1","kind":"Service","metadata":{"name":"wrong-kind"},"spec":{"port":80}}`,
		"/bulwark/v1/endpoints/payments/x": `{"address":"10.0.0.1","port":"80"}`,
		"/bulwark/v1/services/a/b":         blackBoxService,
	}
	for k, v := range kv {
		_, err := e.cli.Put(ctx, k, v)
		require.NoError(t, err)
	}
	for i := 0; i < 7; i++ {
		_, err := e.st.Put(ctx, service(t, fmt.Sprintf("svc-%d", i), 1000+i), 0)
		require.NoError(t, err)
	}

	set, rev, problems, err := e.st.Load(ctx)
	require.NoError(t, err)
	cur, err := e.cli.Get(ctx, "x")
	require.NoError(t, err)
	require.Equal(t, cur.Header.Revision, rev)

	require.Len(t, set.Services, 8)
	svc := set.Services["payments"]
	require.NotNil(t, svc)
	require.Equal(t, []string{"ledger", "fraud"}, svc.Spec.Dependencies)
	require.Positive(t, svc.Metadata.Revision)
	pol := set.Policies["payments"]
	require.NotNil(t, pol)
	require.Equal(t, 3*time.Second, pol.Spec.Timeouts.Request.D())
	require.Equal(t, 250*time.Millisecond, pol.Spec.Retries.Backoff.Max.D())
	require.Equal(t, "payments-static", pol.Spec.Fallback.Service)
	require.Equal(t, 1.9, *pol.Spec.CircuitBreaker.SuccessRate.StdevFactor)
	require.Equal(t, "on", set.Experiments["payments-503"].Spec.Headers["x-chaos"])
	require.Equal(t, policies.Endpoint{Address: "10.0.0.9", Port: 8080, Zone: "z2", Weight: 3, Instance: "pod-9"}, set.Registered["payments"]["pod-9"])

	byKey := map[string]string{}
	for _, p := range problems {
		var ve *ValueError
		require.ErrorAs(t, p, &ve)
		byKey[ve.Key] = ve.Err.Error()
	}
	require.Len(t, byKey, 6, "%v", byKey)
	require.Contains(t, byKey["/bulwark/v1/services/typo"], "spec.protocl: unknown field")
	require.Contains(t, byKey["/bulwark/v1/services/not-json"], "malformed")
	require.Contains(t, byKey["/bulwark/v1/services/other-name"], `metadata.name: "someone"`)
	require.Contains(t, byKey["/bulwark/v1/policies/wrong-kind"], `kind: "Service"`)
	require.Contains(t, byKey["/bulwark/v1/endpoints/payments/x"], "malformed endpoint")
	require.Contains(t, byKey["/bulwark/v1/services/a/b"], "malformed key")

	// Get reports the bad value; List skips it.
	_, err = e.st.Get(ctx, policies.KindService, "typo")
	var ve *ValueError
	require.ErrorAs(t, err, &ve)
	list, _, err := e.st.List(ctx, policies.KindService)
	require.NoError(t, err)
	require.Len(t, list, 8)
	for i := 1; i < len(list); i++ {
		require.Less(t, list[i-1].GetMeta().Name, list[i].GetMeta().Name)
	}
}

func TestRoundTripKeepsWhatWasPut(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := testCtx(t)
	r, err := policies.DecodeOne([]byte(blackBoxPolicy))
	require.NoError(t, err)
	_, err = e.st.Put(ctx, r, 0)
	require.NoError(t, err)
	got, err := e.st.Get(ctx, policies.KindPolicy, "payments")
	require.NoError(t, err)
	require.Equal(t, r, got)
}
