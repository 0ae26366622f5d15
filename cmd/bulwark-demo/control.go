package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// change is the body of PUT /v1/upstreams/{name}: each field set changes
// that part of the behaviour; Reset first puts the instance back to normal.
type change struct {
	Latency *string  `json:"latency,omitempty"` // a Go duration; "0" for none
	Errors  *float64 `json:"errors,omitempty"`  // percent of calls that fail
	Down    *bool    `json:"down,omitempty"`
	Reset   bool     `json:"reset,omitempty"`
}

// maxLatency bounds what an upstream may be told to add.
const maxLatency = time.Minute

// apply returns b changed as c says, or the field that is wrong.
func (c change) apply(b Behaviour) (Behaviour, error) {
	if c.Reset {
		b = Behaviour{}
	}
	if c.Latency != nil {
		d, err := time.ParseDuration(*c.Latency)
		if *c.Latency == "0" {
			d, err = 0, nil
		}
		if err != nil || d < 0 || d > maxLatency {
			return b, fmt.Errorf("latency: want a duration between 0 and %s, such as 500ms, got %q", maxLatency, *c.Latency)
		}
		b.Latency = d
	}
	if c.Errors != nil {
		if *c.Errors < 0 || *c.Errors > 100 {
			return b, fmt.Errorf("errors: want a percentage between 0 and 100, got %g", *c.Errors)
		}
		b.Errors = *c.Errors
	}
	if c.Down != nil {
		b.Down = *c.Down
	}
	return b, nil
}

// controlHandler serves the demo's control endpoint:
//
//	GET /v1/stats             the readout as JSON (Stats)
//	PUT /v1/upstreams/{name}  change an instance, or every instance of a service
func (d *demo) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, d.stats())
	})
	mux.HandleFunc("PUT /v1/upstreams/{name}", func(w http.ResponseWriter, r *http.Request) {
		var c change
		dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			writeJSON(w, http.StatusBadRequest, problem{"body: " + err.Error()})
			return
		}
		us, err := d.find(r.PathValue("name"))
		if err != nil {
			writeJSON(w, http.StatusNotFound, problem{err.Error()})
			return
		}
		// Check the change against every instance first: all or nothing.
		next := make([]Behaviour, len(us))
		for i, u := range us {
			if next[i], err = c.apply(u.behaviour()); err != nil {
				writeJSON(w, http.StatusBadRequest, problem{err.Error()})
				return
			}
		}
		var out []UpstreamStats
		for i, u := range us {
			if err := u.set(next[i]); err != nil {
				writeJSON(w, http.StatusInternalServerError, problem{err.Error()})
				return
			}
			out = append(out, UpstreamStats{Name: u.name, Service: u.service, Protocol: u.protocol, State: u.behaviour()})
		}
		writeJSON(w, http.StatusOK, out)
	})
	return mux
}

// problem is an error answer of the control endpoint.
type problem struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// controlClient talks to a running demo's control endpoint.
type controlClient struct {
	base string
	http *http.Client
}

// errUnreachable marks a demo that is not running (or not yet).
var errUnreachable = errors.New("the demo is not running")

func (c controlClient) do(method, path string, body io.Reader, out any) error {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s (start it with make demo): %v", errUnreachable, c.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var p problem
		if json.Unmarshal(raw, &p) == nil && p.Error != "" {
			return errors.New(p.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return json.Unmarshal(raw, out)
}

func (c controlClient) stats() (Stats, error) {
	var s Stats
	err := c.do(http.MethodGet, "/v1/stats", nil, &s)
	return s, err
}
