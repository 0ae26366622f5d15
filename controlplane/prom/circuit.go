package prom

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// CircuitWindow is the rate window of the circuit state's retry rates.
const CircuitWindow = 5 * time.Minute

// circuitQueries bounds the queries in flight for one audit.
const circuitQueries = 8

// Circuits reads the circuit state of services now: hosts ejected (the
// largest count any caller's proxies report), healthy hosts (the smallest),
// and retry and overflow rates (summed over callers and flavors). A
// service whose queries fail is not Known, with the reason. FallbackServing
// is left for the caller, who knows the policies.
func (c *Client) Circuits(ctx context.Context, t Templates, services []string) map[string]api.CircuitState {
	out := make(map[string]api.CircuitState, len(services))
	var mu sync.Mutex
	sem := make(chan struct{}, circuitQueries)
	var wg sync.WaitGroup
	for _, svc := range services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			st := c.circuit(ctx, t, svc)
			mu.Lock()
			out[svc] = st
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func (c *Client) circuit(ctx context.Context, t Templates, svc string) api.CircuitState {
	v := Vars{Service: svc, Window: Window(CircuitWindow), CallerLabel: t.CallerLabel}
	st := api.CircuitState{Known: true}
	read := func(tmpl string, fold func(acc, x float64) float64) *float64 {
		q, err := t.Render(tmpl, v)
		if err != nil || q == "" || !st.Known {
			return nil
		}
		ss, err := c.Query(ctx, q, time.Time{})
		if err != nil {
			st.Known, st.Reason = false, err.Error()
			return nil
		}
		var acc *float64
		for _, s := range ss {
			if math.IsNaN(s.Value) {
				continue
			}
			x := s.Value
			if acc == nil {
				acc = &x
			} else {
				*acc = fold(*acc, x)
			}
		}
		return acc
	}
	sum := func(a, b float64) float64 { return a + b }
	add := func(a, b *float64) *float64 {
		switch {
		case a == nil:
			return b
		case b == nil:
			return a
		}
		x := *a + *b
		return &x
	}
	st.HostsEjected = read(t.Envoy.EjectedHosts, math.Max)
	st.HealthyHosts = read(t.Envoy.HealthyHosts, math.Min)
	st.RetryRate = add(read(t.Envoy.RetryRate, sum), read(t.GRPC.RetryRate, sum))
	st.RetryOverflowRate = add(read(t.Envoy.RetryOverflowRate, sum), read(t.GRPC.RetryOverflowRate, sum))
	if !st.Known {
		return api.CircuitState{Reason: st.Reason}
	}
	return st
}
