package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// client talks to a control plane's admin API.
type client struct {
	base  string // scheme://host:port, no trailing slash
	token string
	http  *http.Client
}

// apiError is a failed API call: the server answered with a problem, or
// could not be reached (then status is 0).
type apiError struct {
	status int
	prob   *api.Problem
	err    error // transport error when unreachable
	server string
	hint   string // what to do instead, when the answer makes it plain
}

// plainHTTPToTLS is what Go's HTTPS server answers to a plain HTTP request.
const plainHTTPToTLS = "Client sent an HTTP request to an HTTPS server"

func (e *apiError) Error() string {
	if e.status == 0 {
		return fmt.Sprintf("cannot reach the server at %s: %v; is bulwark running there? (set --server or BULWARK_SERVER)", e.server, e.err)
	}
	if e.prob != nil && e.prob.Detail != "" {
		return e.prob.Detail
	}
	if e.hint != "" {
		return fmt.Sprintf("the server answered %d %s: %s", e.status, http.StatusText(e.status), e.hint)
	}
	return fmt.Sprintf("the server answered %d %s", e.status, http.StatusText(e.status))
}

// newClient returns a client of e.server; e.caFile adds a trusted CA.
func (e *env) newClient() (*client, error) {
	caFile := e.caFile
	base := strings.TrimRight(e.server, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q is not an http:// or https:// URL", e.server)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &client{base: base, token: e.token, http: &http.Client{Timeout: 30 * time.Second, Transport: tr}}, nil
}

// call sends a request and decodes a JSON answer into out (when not nil).
// contentType is sent with a body.
func (c *client) call(method, path, contentType string, body []byte, out any, header ...string) error {
	req, err := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &apiError{err: err, server: c.base}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return &apiError{err: err, server: c.base}
	}
	if resp.StatusCode >= 300 {
		ae := &apiError{status: resp.StatusCode, server: c.base}
		if resp.StatusCode == http.StatusBadRequest && bytes.Contains(data, []byte(plainHTTPToTLS)) {
			ae.hint = "the server speaks HTTPS: use --server " + strings.Replace(c.base, "http://", "https://", 1) + " (and --ca-file for a private CA)"
		}
		var p api.Problem
		if json.Unmarshal(data, &p) == nil && p.Status != 0 {
			ae.prob = &p
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the server's answer is not what bulwarkctl expects (is --server a Bulwark admin API?): %w", err)
	}
	return nil
}

// fail reports a failed command on stderr and returns its exit code: 3 when
// the server (or its store) cannot be reached, 1 otherwise. Each problem is
// one line: the detail, or one line per violation with its field.
func (e *env) fail(cmd string, err error) int {
	var ae *apiError
	if !errors.As(err, &ae) {
		fmt.Fprintf(e.stderr, "bulwarkctl %s: %v\n", cmd, err)
		return exitFailed
	}
	switch {
	case ae.status == 0:
		fmt.Fprintf(e.stderr, "bulwarkctl %s: %v\n", cmd, ae)
		return exitUnreachable
	case ae.status == http.StatusServiceUnavailable:
		fmt.Fprintf(e.stderr, "bulwarkctl %s: %v\n", cmd, ae)
		return exitUnreachable
	}
	if ae.prob != nil && len(ae.prob.Violations) > 0 {
		for _, v := range ae.prob.Violations {
			line := v.Message
			if v.Field != "" {
				line = v.Field + ": " + line
			}
			if v.Line > 0 {
				line += fmt.Sprintf(" (line %d)", v.Line)
			}
			fmt.Fprintf(e.stderr, "bulwarkctl %s: %s\n", cmd, line)
		}
		return exitFailed
	}
	fmt.Fprintf(e.stderr, "bulwarkctl %s: %v\n", cmd, ae)
	return exitFailed
}
