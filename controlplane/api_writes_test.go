package controlplane

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane/adminapi"
	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
)

// parallel runs f(i) for i in [0, n) at the same time, released together.
func parallel(n int, f func(i int)) {
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	ready.Add(n)
	done.Add(n)
	for i := range n {
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			f(i)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
}

func timeoutPolicy(name, target, timeout string) string {
	return fmt.Sprintf(`apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: %s}
spec:
  target: {service: %s}
  timeouts: {request: %s}
`, name, target, timeout)
}

// Two policies that conflict (same target, same field, equal specificity),
// written at the same time by two clients: one is stored, the other is
// refused with 409 naming the policy that won, every time.
func TestAPIConcurrentConflictingWrites(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	decode[writeReply](t, c.putYAML("/v1/services/payments", paymentsService), http.StatusCreated)
	for trial := range 15 {
		names := []string{fmt.Sprintf("a-%d", trial), fmt.Sprintf("b-%d", trial)}
		replies := make([]reply, 2)
		parallel(2, func(i int) {
			replies[i] = c.putYAML("/v1/policies/"+names[i], timeoutPolicy(names[i], "payments", fmt.Sprintf("%ds", i+1)))
		})
		var won []string
		for i, r := range replies {
			switch r.code {
			case http.StatusCreated:
				won = append(won, names[i])
			case http.StatusConflict:
				p := problem(t, r, http.StatusConflict)
				require.Contains(t, p.Detail, names[1-i], "the refusal names the other policy")
				require.NotEmpty(t, p.Conflicts)
			default:
				t.Fatalf("trial %d: %s answered %d: %s", trial, names[i], r.code, r.body)
			}
		}
		require.Len(t, won, 1, "trial %d: exactly one of two conflicting policies is stored", trial)
		list := decode[listReply](t, c.get("/v1/policies"), http.StatusOK)
		require.Len(t, list.Items, 1, "trial %d: the store holds one policy", trial)
		decode[writeReply](t, c.del("/v1/policies/"+won[0]), http.StatusOK)
	}
}

// Without If-Match the last writer wins: many clients writing one resource
// at once all succeed (none gets a 409 for a revision it never sent), and
// what is stored is the write with the highest revision.
func TestAPIUnconditionalWritesLastWriterWins(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	decode[writeReply](t, c.putYAML("/v1/services/payments", paymentsService), http.StatusCreated)
	const writers, each = 10, 10
	type result struct {
		rev     int64
		timeout string
	}
	results := make([][]result, writers)
	parallel(writers, func(i int) {
		for j := range each {
			timeout := fmt.Sprintf("%dms", 100+i*each+j)
			r := c.putYAML("/v1/policies/payments", timeoutPolicy("payments", "payments", timeout))
			if r.code != http.StatusOK && r.code != http.StatusCreated {
				t.Errorf("writer %d, write %d: %d %s", i, j, r.code, r.body)
				continue
			}
			var w writeReply
			if err := json.Unmarshal(r.body, &w); err != nil {
				t.Errorf("writer %d: %v", i, err)
				continue
			}
			results[i] = append(results[i], result{w.Revision, timeout})
		}
	})
	require.False(t, t.Failed())
	var last result
	for _, rs := range results {
		for _, r := range rs {
			if r.rev > last.rev {
				last = r
			}
		}
	}
	got := c.get("/v1/policies/payments")
	require.Equal(t, http.StatusOK, got.code)
	require.Equal(t, etag(last.rev), got.header.Get("ETag"))
	require.Contains(t, string(got.body), `"request": "`+last.timeout+`"`)

	// Deletes without If-Match racing with writes: a 404 when a delete
	// came second, never a 409.
	parallel(4, func(i int) {
		var r reply
		if i%2 == 0 {
			r = c.del("/v1/policies/payments")
		} else {
			r = c.putYAML("/v1/policies/payments", timeoutPolicy("payments", "payments", "2s"))
		}
		if r.code != http.StatusOK && r.code != http.StatusCreated && r.code != http.StatusNotFound {
			t.Errorf("client %d: %d %s", i, r.code, r.body)
		}
	})
}

// With If-Match, writers that read the same revision race: exactly one
// wins, the others get 409 naming the resource.
func TestAPIIfMatchCompareAndSwapRace(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	created := decode[writeReply](t, c.putYAML("/v1/policies/payments", paymentsPolicy), http.StatusCreated)
	const writers = 6
	codes := make([]int, writers)
	parallel(writers, func(i int) {
		r := c.putYAML("/v1/policies/payments", timeoutPolicy("payments", "payments", fmt.Sprintf("%ds", i+4)), "If-Match", etag(created.Revision))
		codes[i] = r.code
		if r.code == http.StatusConflict {
			p := problem(t, r, http.StatusConflict)
			require.Contains(t, p.Detail, `"payments"`)
			require.Contains(t, p.Detail, fmt.Sprintf("expected revision %d", created.Revision))
		}
	})
	won := 0
	for _, code := range codes {
		if code == http.StatusOK {
			won++
		} else {
			require.Equal(t, http.StatusConflict, code)
		}
	}
	require.Equal(t, 1, won)
}

// aliasBomb is a body of about size bytes: one Service whose endpoints are
// one bad endpoint repeated through a YAML alias, so that every copy fails
// validation.
func aliasBomb(size int) string {
	var b strings.Builder
	b.WriteString("apiVersion: bulwark/v1\nkind: Service\nmetadata: {name: bomb}\nspec:\n  port: 1\n  endpoints: [&e {address: 'not an address', port: 0}")
	for b.Len() < size-8 {
		b.WriteString(", *e")
	}
	b.WriteString("]\n")
	return b.String()
}

// Validation output is bounded: a 1 MiB body that expands into hundreds of
// thousands of violations answers with at most 1,000 (and one saying there
// were more) and a short detail, three at once, as a single PUT or a bundle
// of many such documents.
func TestAPIValidationOutputBounded(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	c.http.Timeout = 2 * time.Minute // the race detector slows validation down
	bomb := aliasBomb(adminapi.MaxBodyBytes - 1024)
	var docs strings.Builder
	for i := 0; docs.Len() < adminapi.MaxBodyBytes-64*1024; i++ {
		fmt.Fprintf(&docs, "---\n%s", strings.Replace(aliasBomb(60*1024), "name: bomb", fmt.Sprintf("name: bomb-%d", i), 1))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	replies := make([]reply, 3)
	parallel(3, func(i int) {
		if i == 2 {
			replies[i] = c.post("/v1/apply", "application/yaml", docs.String())
			return
		}
		replies[i] = c.putYAML("/v1/services/bomb", bomb)
	})
	runtime.ReadMemStats(&after)
	for i, r := range replies {
		p := problem(t, r, http.StatusBadRequest)
		require.LessOrEqual(t, len(p.Violations), policies.MaxViolations+1, "request %d", i)
		require.Greater(t, len(p.Violations), 100, "request %d reports many of them", i)
		require.Contains(t, p.Violations[len(p.Violations)-1].Message, "more than 1000 problems")
		require.LessOrEqual(t, len(p.Detail), api.MaxDetailBytes)
		require.Less(t, len(r.body), 256*1024, "request %d: a bounded answer", i)
	}
	// Memory allocated by the three requests (and anything else running),
	// before the bound: several gigabytes.
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<30))
}

// A source, in the body or the query, is bounded and printable.
func TestAPISourceBounded(t *testing.T) {
	h := newHarness(t)
	c := h.api("")
	p := problem(t, c.post("/v1/apply?source=ci%0Aevil", "application/yaml", paymentsService), http.StatusBadRequest)
	require.True(t, hasViolation(p, "source"), "%+v", p)
	p = problem(t, c.post("/v1/apply?source="+strings.Repeat("x", 10_000), "application/yaml", paymentsService), http.StatusBadRequest)
	require.Contains(t, p.Detail, "at most 512 bytes")
	body := strings.Replace(paymentsService, "metadata: {name: payments,", "metadata: {source: \"a\\nb\", name: payments,", 1)
	p = problem(t, c.putYAML("/v1/services/payments", body), http.StatusBadRequest)
	require.True(t, hasViolation(p, "metadata.source"), "%+v", p)
	decode[writeReply](t, c.post("/v1/apply?source=team-payments", "application/yaml", paymentsService), http.StatusOK)
}

// make run says that it also starts the example's 10-minute chaos
// experiment.
func TestMakeRunAnnouncesTheExperiment(t *testing.T) {
	out, err := exec.Command("make", "-s", "-n", "-C", "..", "run").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "10-minute chaos experiment of examples/policies/chaos-payments-503.yaml")
	exp, err := os.ReadFile("../examples/policies/chaos-payments-503.yaml")
	require.NoError(t, err)
	require.Contains(t, string(exp), "duration: 10m", "the announcement matches the example")
}
