package ir

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

func checkRoutes(c *checker, p string, routes []*Route) {
	if len(routes) == 0 {
		c.add(p+".routes", "at least the default route %q is required", DefaultRoute)
		return
	}
	seen := make(map[string]int, len(routes))
	for i, r := range routes {
		rp := p + ".routes[" + strconv.Itoa(i) + "]"
		if r == nil {
			c.add(rp, "must not be null")
			continue
		}
		if !strings.HasPrefix(r.PathPrefix, "/") {
			c.add(rp+".pathPrefix", "must start with /, got %q", r.PathPrefix)
		}
		if j, dup := seen[r.PathPrefix]; dup {
			c.add(rp+".pathPrefix", "duplicate of routes[%d] (%q)", j, r.PathPrefix)
		} else {
			// Routes match in order: an earlier, shorter prefix would hide this one.
			for j := 0; j < i; j++ {
				if routes[j] != nil && strings.HasPrefix(r.PathPrefix, routes[j].PathPrefix) {
					c.add(rp+".pathPrefix", "%q can never match: routes[%d] (%q) comes first and matches it; order routes longest prefix first", r.PathPrefix, j, routes[j].PathPrefix)
					break
				}
			}
		}
		seen[r.PathPrefix] = i
		if r.Timeout != nil {
			checkDuration(c, rp, "timeout", *r.Timeout, false)
		}
		if r.IdleTimeout != nil {
			checkDuration(c, rp, "idleTimeout", *r.IdleTimeout, false)
		}
		if r.Retry != nil {
			checkRetry(c, rp+".retry", r.Retry)
		}
		if r.Fault != nil {
			checkFault(c, rp+".fault", r.Fault)
		}
	}
	if last := routes[len(routes)-1]; last != nil && last.PathPrefix != DefaultRoute {
		c.add(fmt.Sprintf("%s.routes[%d].pathPrefix", p, len(routes)-1), "the last route must be the default route %q, got %q", DefaultRoute, last.PathPrefix)
	}
}

func checkRetry(c *checker, q string, r *Retry) {
	boundedInt(c, q+".attempts", r.Attempts, "retries.attempts")
	if r.Attempts <= 0 {
		return // retries disabled: the rest is never used
	}
	positive(c, q, "perTryTimeout", r.PerTryTimeout)
	checkDuration(c, q, "backoffBase", r.BackoffBase, true)
	checkDuration(c, q, "backoffMax", r.BackoffMax, true)
	if r.BackoffMax < r.BackoffBase {
		c.add(q+".backoffMax", "must be >= backoffBase (%s), got %s", r.BackoffBase, r.BackoffMax)
	}
	if len(r.On) == 0 && len(r.StatusCodes) == 0 {
		c.add(q+".on", "set at least one retry condition or status code")
	}
	for i, on := range r.On {
		if !slices.Contains(RetryConditions, on) {
			c.add(fmt.Sprintf("%s.on[%d]", q, i), "unknown retry condition %q: use one of %s", on, strings.Join(RetryConditions, ", "))
		}
	}
	for i, code := range r.StatusCodes {
		boundedInt(c, fmt.Sprintf("%s.statusCodes[%d]", q, i), code, "retries.statusCodes")
	}
	for i, m := range r.Methods {
		if !isMethod(m) {
			c.add(fmt.Sprintf("%s.methods[%d]", q, i), "must be an upper-case HTTP method such as GET, got %q", m)
		}
	}
}

func isMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if m[i] < 'A' || m[i] > 'Z' {
			return false
		}
	}
	return true
}

func checkFault(c *checker, q string, f *Fault) {
	if f.Experiment == "" {
		c.add(q+".experiment", "required: the experiment the fault comes from")
	}
	if f.Abort == nil && f.Delay == nil {
		c.add(q, "set abort, delay or both")
	}
	if a := f.Abort; a != nil {
		checkPercent(c, q+".abort.percent", a.Percent)
		switch {
		case a.HTTPStatus != 0 && a.GRPCStatus != nil:
			c.add(q+".abort", "set one of httpStatus and grpcStatus, not both")
		case a.HTTPStatus == 0 && a.GRPCStatus == nil:
			c.add(q+".abort", "set httpStatus or grpcStatus")
		case a.HTTPStatus != 0 && (a.HTTPStatus < 200 || a.HTTPStatus > 599):
			c.add(q+".abort.httpStatus", "must be between 200 and 599, got %d", a.HTTPStatus)
		case a.GRPCStatus != nil && (*a.GRPCStatus < 0 || *a.GRPCStatus > 16):
			c.add(q+".abort.grpcStatus", "must be a gRPC status code between 0 and 16, got %d", *a.GRPCStatus)
		}
	}
	if d := f.Delay; d != nil {
		checkPercent(c, q+".delay.percent", d.Percent)
		checkDuration(c, q, "delay.fixed", d.Fixed, true)
	}
	names := make([]string, 0, len(f.Headers))
	for name := range f.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !isHeaderName(name) {
			c.add(q+".headers."+name, "not a valid HTTP header name")
		}
	}
}

// Validate checks a fault on its own, so a caller can leave out a bad fault
// without losing the rest of its service. Paths start with "fault".
func (f *Fault) Validate() error {
	if f == nil {
		return nil
	}
	c := &checker{}
	checkFault(c, "fault", f)
	return c.err()
}

// checkPercent checks the share of calls a fault hits: more than 0 (a fault
// that hits nothing is refused by policy validation too) and at most 100.
func checkPercent(c *checker, path string, v float64) {
	if v <= 0 || v > 100 {
		c.add(path, "must be a percentage greater than 0 and at most 100, got %g", v)
	}
}

// isHeaderName reports whether name is an HTTP token (RFC 9110), lower or upper case.
func isHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		ok := (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || strings.IndexByte("!#$%&'*+-.^_`|~", ch) >= 0
		if !ok {
			return false
		}
	}
	return true
}
