package controlplane

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

func experimentYAML(name, service string, percent int, duration string) string {
	return fmt.Sprintf(`apiVersion: bulwark/v1
kind: ChaosExperiment
metadata: {name: %s}
spec:
  target: {service: %s}
  abort: {percent: %d, grpcStatus: 8}
  duration: %s
  hypothesis: callers degrade gracefully
`, name, service, percent, duration)
}

type historyReply struct {
	Items []policies.ChaosExperiment `json:"items"`
}

// An experiment started over the API injects faults into a real gRPC
// client's calls, then expires by itself: it leaves the store, the calls
// succeed again and the history records it as expired. The guardrails
// refuse experiments that are too long or too broad.
func TestAPIExperimentExpires(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.MaxExperimentDuration = time.Minute
		c.MaxFaultPercent = 100
	})
	c := h.api("")
	b := startBackend(t, "ok", nil)
	h.apply(serviceYAML("payments", b.port))
	client, _ := h.dial("checkout", "payments")
	eventually(t, 10*time.Second, func() error { _, err := call(client, time.Second, "x"); return err })

	p := problem(t, c.putYAML("/v1/experiments/too-long", experimentYAML("too-long", "payments", 10, "2h")), http.StatusBadRequest)
	require.True(t, hasViolation(p, "spec.duration"), "%+v", p.Violations)
	p = problem(t, c.putYAML("/v1/experiments/history", experimentYAML("history", "payments", 10, "3s")), http.StatusBadRequest)
	require.True(t, hasViolation(p, "metadata.name"), "%+v", p.Violations)

	started := decode[writeReply](t, c.putYAML("/v1/experiments/payments-exhausted", experimentYAML("payments-exhausted", "payments", 100, "3s")), http.StatusCreated)
	exp, err := policies.DecodeStored(started.Resource)
	require.NoError(t, err)
	st := exp.(*policies.ChaosExperiment).Status
	require.NotNil(t, st)
	require.Equal(t, store.OutcomeRunning, st.Outcome)
	require.Equal(t, "anonymous", st.StartedBy)

	eventually(t, 5*time.Second, func() error {
		if _, err := call(client, time.Second, "x"); codeOf(err) != codes.ResourceExhausted {
			return fmt.Errorf("want ResourceExhausted from the experiment, got %v", err)
		}
		return nil
	})
	p = problem(t, c.putYAML("/v1/experiments/payments-exhausted", experimentYAML("payments-exhausted", "payments", 50, "3s")), http.StatusConflict)
	require.Contains(t, p.Detail, "stop it first")

	eventually(t, 15*time.Second, func() error {
		if n := len(decode[listReply](t, c.get("/v1/experiments"), http.StatusOK).Items); n != 0 {
			return fmt.Errorf("%d experiments still listed", n)
		}
		if _, err := call(client, time.Second, "x"); err != nil {
			return fmt.Errorf("calls still fail: %v", err)
		}
		return nil
	})
	hist := decode[historyReply](t, c.get("/v1/experiments/history?service=payments"), http.StatusOK)
	require.Len(t, hist.Items, 1)
	require.Equal(t, store.OutcomeExpired, hist.Items[0].Status.Outcome)
	require.Empty(t, decode[historyReply](t, c.get("/v1/experiments/history?service=ledger"), http.StatusOK).Items)
}

func TestAPIExperimentBlastRadiusCap(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxFaultPercent = 20 })
	c := h.api("")
	h.apply(serviceYAML("payments", 9001))
	p := problem(t, c.putYAML("/v1/experiments/wide", experimentYAML("wide", "payments", 30, "1m")), http.StatusBadRequest)
	require.True(t, hasViolation(p, "spec.abort.percent"), "%+v", p.Violations)
	require.Contains(t, p.Detail, "20")
	p = problem(t, c.post("/v1/apply", "application/yaml", experimentYAML("wide", "payments", 30, "1m")), http.StatusBadRequest)
	require.True(t, strings.HasSuffix(p.Violations[0].Field, "spec.abort.percent"), "%+v", p.Violations)
	decode[writeReply](t, c.putYAML("/v1/experiments/narrow", experimentYAML("narrow", "payments", 20, "1m")), http.StatusCreated)
}

// The kill switch stops every running experiment at once; the client's
// calls succeed again and the history says who stopped them.
func TestAPIKillSwitch(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.TokenFile = tokenFile(t) })
	c := h.api(editorToken)
	b := startBackend(t, "ok", nil)
	h.apply(serviceYAML("payments", b.port) + "---\n" + serviceYAML("ledger", b.port))
	client, _ := h.dial("checkout", "payments")
	eventually(t, 10*time.Second, func() error { _, err := call(client, time.Second, "x"); return err })

	decode[writeReply](t, c.putYAML("/v1/experiments/payments-down", experimentYAML("payments-down", "payments", 100, "10m")), http.StatusCreated)
	decode[api.ApplyResult](t, c.post("/v1/apply", "application/yaml", experimentYAML("ledger-down", "ledger", 50, "10m")), http.StatusOK)
	eventually(t, 5*time.Second, func() error {
		if _, err := call(client, time.Second, "x"); codeOf(err) != codes.ResourceExhausted {
			return fmt.Errorf("want ResourceExhausted from the experiment, got %v", err)
		}
		return nil
	})

	res := decode[api.KillSwitchResult](t, c.post("/v1/experiments/stop", "", ""), http.StatusOK)
	require.Equal(t, []string{"ledger-down", "payments-down"}, res.Stopped)
	require.Empty(t, decode[listReply](t, c.get("/v1/experiments"), http.StatusOK).Items)
	eventually(t, 5*time.Second, func() error { _, err := call(client, time.Second, "x"); return err })

	hist := decode[historyReply](t, c.get("/v1/experiments/history"), http.StatusOK)
	require.Len(t, hist.Items, 2)
	for _, e := range hist.Items {
		require.Equal(t, store.OutcomeStopped, e.Status.Outcome, e.Metadata.Name)
		require.Equal(t, "token@line4", e.Status.StoppedBy, e.Metadata.Name)
		require.NotEmpty(t, e.Status.EndedAt)
	}
	again := decode[api.KillSwitchResult](t, c.post("/v1/experiments/stop", "", ""), http.StatusOK)
	require.Empty(t, again.Stopped)

	// Stopping one experiment by name.
	decode[writeReply](t, c.putYAML("/v1/experiments/payments-down", experimentYAML("payments-down", "payments", 100, "10m")), http.StatusCreated)
	decode[writeReply](t, c.del("/v1/experiments/payments-down"), http.StatusOK)
	problem(t, c.del("/v1/experiments/payments-down"), http.StatusNotFound)
	hist = decode[historyReply](t, c.get("/v1/experiments/history?service=payments"), http.StatusOK)
	require.Len(t, hist.Items, 2)
	require.Equal(t, store.OutcomeStopped, hist.Items[0].Status.Outcome)
}

// An apply that declares an experiment already running with the same spec
// (started by someone else) leaves it running; another spec is refused.
func TestAPIApplyLeavesARunningExperiment(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	h.apply(serviceYAML("payments", 9001))
	started := decode[writeReply](t, c.putYAML("/v1/experiments/game-day", experimentYAML("game-day", "payments", 10, "10m")), http.StatusCreated)
	res := decode[api.ApplyResult](t, c.post("/v1/apply?source=ci", "application/yaml", experimentYAML("game-day", "payments", 10, "10m")), http.StatusOK)
	require.Equal(t, []api.ApplyItem{{Kind: policies.KindExperiment, Name: "game-day", Action: api.ActionUnchanged, Revision: started.Revision}}, res.Items)
	p := problem(t, c.post("/v1/apply?source=ci", "application/yaml", experimentYAML("game-day", "payments", 20, "10m")), http.StatusBadRequest)
	require.Contains(t, p.Detail, "stop it")
}
