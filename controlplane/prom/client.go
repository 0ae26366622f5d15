// Package prom is Bulwark's Prometheus data source: an HTTP client for
// instant queries (bearer token, TLS, a timeout on every query), the state
// of that data source for status and metrics, and the query templates for
// the data-plane metrics of Envoy and of gRPC's OpenTelemetry plugin.
//
// It must not import anything of ours but policies and controlplane/api: it
// is a leaf the experiment runner, the recommendations and the audit use.
package prom

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// DefaultTimeout bounds one query when Config.Timeout is 0: a slow
// Prometheus costs an evaluation, never a write or a push.
const DefaultTimeout = 5 * time.Second

// maxResponse bounds the body of one answer.
const maxResponse = 8 << 20

// Config says where Prometheus is and how to reach it.
type Config struct {
	// URL is the Prometheus base URL, such as http://127.0.0.1:9090.
	URL string
	// TokenFile holds a bearer token (one line) sent with every query.
	TokenFile string
	// CAFile verifies Prometheus's certificate; CertFile and KeyFile are a
	// client certificate for mTLS.
	CAFile, CertFile, KeyFile string
	// Timeout bounds each query; 0 is DefaultTimeout.
	Timeout time.Duration
}

// Client queries one Prometheus server and remembers whether it answers.
type Client struct {
	base    *url.URL
	http    *http.Client
	token   string
	timeout time.Duration

	mu    sync.Mutex
	state api.PrometheusStatus
}

// New checks cfg and returns a client; it does not contact Prometheus.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--prometheus-url %q: want http://host:port or https://host:port", cfg.URL)
	}
	c := &Client{base: u, timeout: cfg.Timeout}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if cfg.TokenFile != "" {
		b, err := os.ReadFile(cfg.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("--prometheus-token-file: %w", err)
		}
		c.token = strings.TrimSpace(string(b))
		if c.token == "" || strings.ContainsAny(c.token, "\r\n") {
			return nil, fmt.Errorf("--prometheus-token-file %s: want one line with the token", cfg.TokenFile)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" || cfg.CertFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("--prometheus-ca: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--prometheus-ca %s: no PEM certificate", cfg.CAFile)
			}
		}
		if (cfg.CertFile == "") != (cfg.KeyFile == "") {
			return nil, errors.New("--prometheus-cert and --prometheus-key go together")
		}
		if cfg.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("--prometheus-cert: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		tr.TLSClientConfig = tc
	}
	c.http = &http.Client{Transport: tr, Timeout: c.timeout}
	c.state = api.PrometheusStatus{Configured: true, URL: u.Redacted()}
	return c, nil
}

// Sample is one series of an instant query's answer.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// QueryError is Prometheus refusing a query (bad_data, execution): the
// query is wrong, not the server down.
type QueryError struct {
	Type, Message string
}

func (e *QueryError) Error() string { return "prometheus: " + e.Type + ": " + e.Message }

// Query runs an instant query at time at (zero: now) and returns its series;
// a scalar answer is one sample without labels.
func (c *Client) Query(ctx context.Context, query string, at time.Time) ([]Sample, error) {
	out, err := c.query(ctx, query, at)
	c.mu.Lock()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	var qe *QueryError
	switch {
	case err == nil || errors.As(err, &qe):
		c.state.Up, c.state.LastSuccess, c.state.Error = true, now, ""
	default:
		c.state.Up, c.state.LastFailure, c.state.Error = false, now, err.Error()
		c.state.Failures++
	}
	c.mu.Unlock()
	return out, err
}

// Status reports whether the last query got an answer, and the last error.
func (c *Client) Status() api.PrometheusStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

func (c *Client) query(ctx context.Context, query string, at time.Time) ([]Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	form := url.Values{"query": {query}}
	if !at.IsZero() {
		form.Set("time", strconv.FormatFloat(float64(at.UnixNano())/1e9, 'f', 3, 64))
	}
	form.Set("timeout", c.timeout.String())
	u := c.base.JoinPath("api/v1/query")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("prometheus unreachable: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("prometheus: read answer: %w", err)
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("prometheus: answer larger than %d bytes", maxResponse)
	}
	var ans struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, fmt.Errorf("prometheus: HTTP %d, not a Prometheus answer: %.200s", resp.StatusCode, body)
	}
	if ans.Status != "success" {
		if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity {
			return nil, &QueryError{Type: ans.ErrorType, Message: ans.Error}
		}
		return nil, fmt.Errorf("prometheus: HTTP %d: %s: %s", resp.StatusCode, ans.ErrorType, ans.Error)
	}
	switch ans.Data.ResultType {
	case "scalar":
		var pair [2]any
		if err := json.Unmarshal(ans.Data.Result, &pair); err != nil {
			return nil, fmt.Errorf("prometheus: scalar: %w", err)
		}
		v, err := sampleValue(pair[1])
		if err != nil {
			return nil, err
		}
		return []Sample{{Value: v}}, nil
	case "vector":
		var vec []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(ans.Data.Result, &vec); err != nil {
			return nil, fmt.Errorf("prometheus: vector: %w", err)
		}
		out := make([]Sample, 0, len(vec))
		for _, s := range vec {
			v, err := sampleValue(s.Value[1])
			if err != nil {
				return nil, err
			}
			out = append(out, Sample{Labels: s.Metric, Value: v})
		}
		return out, nil
	}
	return nil, &QueryError{Type: "bad_data", Message: fmt.Sprintf("the query returns a %s; want a number (a scalar or an instant vector)", ans.Data.ResultType)}
}

func sampleValue(v any) (float64, error) {
	s, ok := v.(string)
	if !ok {
		return 0, fmt.Errorf("prometheus: sample value %v is not a string", v)
	}
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	}
	return strconv.ParseFloat(s, 64)
}
