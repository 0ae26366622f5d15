package policies

import (
	"fmt"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Guardrails for chaos experiments when the server sets none.
const (
	// DefaultMaxExperimentDuration caps how long an experiment may run.
	DefaultMaxExperimentDuration = time.Hour
	// DefaultMaxFaultPercent caps the share of calls an experiment may hit
	// (the blast radius).
	DefaultMaxFaultPercent = 50.0
)

// ValidateOptions carries the server's guardrails for Validate.
type ValidateOptions struct {
	// MaxExperimentDuration caps ChaosExperiment.spec.duration; 0 means
	// DefaultMaxExperimentDuration.
	MaxExperimentDuration time.Duration
	// MaxFaultPercent caps abort.percent and delay.percent (the blast-radius
	// cap); 0 means DefaultMaxFaultPercent.
	MaxFaultPercent float64
}

func (o ValidateOptions) withDefaults() ValidateOptions {
	if o.MaxExperimentDuration <= 0 {
		o.MaxExperimentDuration = DefaultMaxExperimentDuration
	}
	if o.MaxFaultPercent <= 0 {
		o.MaxFaultPercent = DefaultMaxFaultPercent
	}
	return o
}

// Validate checks one resource on its own and returns every violation, each
// with its full field path, in a stable order (the order of the fields in
// the resource, map keys sorted). It returns nil when the resource is valid;
// test with len, since a nil Violations stored in an error is not a nil error.
//
// Validate rejects what cannot be right. What is legal but probably wrong, and
// anything that needs the other resources (does the fallback exist?), is
// Lint's job.
func Validate(r Resource, opts ValidateOptions) Violations {
	v := &validator{opts: opts.withDefaults()}
	switch x := r.(type) {
	case *Service:
		if x == nil {
			return Violations{{Message: "no resource"}}
		}
		v.typeMeta(x.TypeMeta, KindService)
		v.metadata(&x.Metadata)
		v.service(&x.Spec, x.Metadata.Name)
	case *ResiliencePolicy:
		if x == nil {
			return Violations{{Message: "no resource"}}
		}
		v.typeMeta(x.TypeMeta, KindPolicy)
		v.metadata(&x.Metadata)
		v.policy(&x.Spec)
	case *ChaosExperiment:
		if x == nil {
			return Violations{{Message: "no resource"}}
		}
		v.typeMeta(x.TypeMeta, KindExperiment)
		v.metadata(&x.Metadata)
		v.experiment(&x.Spec)
	default:
		return Violations{{Field: "kind", Message: fmt.Sprintf("unsupported resource type %T: use Service, ResiliencePolicy or ChaosExperiment", r)}}
	}
	return v.vs
}

// validator collects violations.
type validator struct {
	opts ValidateOptions
	vs   Violations
}

func (v *validator) add(field, format string, args ...any) {
	v.vs = append(v.vs, Violation{Field: field, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) typeMeta(t TypeMeta, kind string) {
	if t.APIVersion != APIVersion {
		v.add("apiVersion", "must be %q, got %q", APIVersion, t.APIVersion)
	}
	if t.Kind != kind {
		v.add("kind", "must be %q, got %q", kind, t.Kind)
	}
}

func (v *validator) metadata(m *Metadata) {
	v.name("metadata.name", m.Name)
	for _, k := range sortedKeys(m.Labels) {
		v.label("metadata.labels", k, m.Labels[k])
	}
	if m.Revision < 0 {
		v.add("metadata.revision", "must not be negative (got %d)", m.Revision)
	}
}

// service checks a Service. A service may have neither endpoints nor dns:
// its instances may register themselves through the API, with a TTL.
func (v *validator) service(sp *ServiceSpec, self string) {
	switch sp.Protocol {
	case "", ProtocolHTTP, ProtocolHTTP2, ProtocolGRPC:
	default:
		v.add("spec.protocol", "must be one of http, http2, grpc (got %q)", sp.Protocol)
	}
	v.port("spec.port", sp.Port)
	if len(sp.Endpoints) > 0 && sp.DNS != "" {
		v.add("spec.dns", "set either endpoints or dns, not both")
	}
	seen := map[string]int{}
	for i, ep := range sp.Endpoints {
		path := fmt.Sprintf("spec.endpoints[%d]", i)
		v.vs = append(v.vs, ValidateEndpoint(path, ep)...)
		key := net.JoinHostPort(ep.Address, strconv.Itoa(ep.Port))
		if j, dup := seen[key]; dup {
			v.add(path, "duplicates spec.endpoints[%d] (%s)", j, key)
		} else {
			seen[key] = i
		}
	}
	if sp.DNS != "" {
		host, port, err := net.SplitHostPort(sp.DNS)
		if err != nil {
			v.add("spec.dns", "must be host:port, such as payments.internal:8080 (got %q)", sp.DNS)
		} else {
			if !isHostname(host) && net.ParseIP(host) == nil {
				v.add("spec.dns", "host %q is not a valid hostname", host)
			}
			if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
				v.add("spec.dns", "port %q must be a number between 1 and 65535", port)
			}
		}
	}
	deps := map[string]int{}
	for i, d := range sp.Dependencies {
		path := fmt.Sprintf("spec.dependencies[%d]", i)
		switch j, dup := deps[d]; {
		case !isDNSLabel(d):
			v.add(path, "%s", labelMessage(d))
		case dup:
			v.add(path, "%q is listed twice (first at spec.dependencies[%d])", d, j)
		case d == self:
			v.add(path, "a service does not depend on itself: calls to itself need no entry")
		}
		if _, dup := deps[d]; !dup {
			deps[d] = i
		}
	}
}

// ValidateEndpoint checks one endpoint of a service, static or
// self-registered; path prefixes the field names ("spec.endpoints[0]").
// A weight of 0 means the default of 1 (DefaultService turns it into 1, since
// gRPC clients reject a weight of 0).
func ValidateEndpoint(path string, ep Endpoint) Violations {
	v := &validator{}
	switch ip := net.ParseIP(ep.Address); {
	case ep.Address == "":
		v.add(path+".address", "required: an IP address or a hostname")
	case ip != nil && ip.IsUnspecified():
		v.add(path+".address", "%s is not an address a proxy can connect to", ep.Address)
	case ip == nil && !isHostname(ep.Address):
		v.add(path+".address", "must be an IP address or a hostname (got %q)", ep.Address)
	}
	v.port(path+".port", ep.Port)
	if ep.Weight < 0 {
		v.add(path+".weight", "must not be negative (got %d); 0 means the default weight of 1", ep.Weight)
	}
	if ep.Zone != "" && !isDNSLabel(ep.Zone) {
		v.add(path+".zone", "%s", labelMessage(ep.Zone))
	}
	if ep.Instance != "" && !isInstanceName(ep.Instance) {
		v.add(path+".instance", "must be 1-253 letters, digits, '.', '_', ':' or '-' (got %q)", ep.Instance)
	}
	return v.vs
}

// experiment checks a ChaosExperiment against the guardrails.
func (v *validator) experiment(sp *ExperimentSpec) {
	t := sp.Target
	switch {
	case t.Service == "":
		v.add("spec.target.service", "required: the one service to inject faults into")
	case t.Service == "*":
		v.add("spec.target.service", `must name one service, not "*": an experiment targets a single service`)
	default:
		v.name("spec.target.service", t.Service)
	}
	if len(t.Selector) > 0 {
		v.add("spec.target.selector", "an experiment targets one service by name: use target.service instead")
	}
	if t.Route != nil {
		v.pathPrefix("spec.target.route.pathPrefix", t.Route.PathPrefix)
	}
	v.sources(sp.Sources)
	for _, k := range sortedKeys(sp.Headers) {
		path := "spec.headers." + k
		if !isHeaderName(k) {
			v.add(path, "invalid header name %q: use letters, digits and -_.!#$%%&'*+^`|~", k)
		}
		if strings.ContainsAny(sp.Headers[k], "\x00\r\n") {
			v.add(path, "header value must not contain NUL, CR or LF")
		}
	}
	if sp.Abort == nil && sp.Delay == nil {
		v.add("spec", "set abort, delay or both: an experiment must inject a fault")
	}
	if a := sp.Abort; a != nil {
		v.faultPercent("spec.abort.percent", a.Percent)
		switch {
		case a.HTTPStatus != 0 && a.GRPCStatus != nil:
			v.add("spec.abort", "set exactly one of httpStatus or grpcStatus, not both")
		case a.HTTPStatus == 0 && a.GRPCStatus == nil:
			v.add("spec.abort", "set exactly one of httpStatus (such as 503) or grpcStatus (such as 14, unavailable)")
		}
		if a.HTTPStatus != 0 && (a.HTTPStatus < 200 || a.HTTPStatus > 599) {
			v.add("spec.abort.httpStatus", "must be between 200 and 599 (got %d)", a.HTTPStatus)
		}
		if a.GRPCStatus != nil && (*a.GRPCStatus < 0 || *a.GRPCStatus > 16) {
			v.add("spec.abort.grpcStatus", "must be a gRPC status code between 0 and 16 (got %d)", *a.GRPCStatus)
		}
	}
	if d := sp.Delay; d != nil {
		v.faultPercent("spec.delay.percent", d.Percent)
		if d.Fixed == 0 {
			v.add("spec.delay.fixed", "required: how long to hold a delayed request, such as 2s")
		} else {
			v.positive("spec.delay.fixed", &d.Fixed)
		}
	}
	maxDur := v.opts.MaxExperimentDuration
	switch {
	case sp.Duration == nil:
		v.add("spec.duration", "required: how long the experiment runs before it ends by itself, at most %s", Duration(maxDur))
	case sp.Duration.D() <= 0:
		v.add("spec.duration", "must be > 0 (got %s)", *sp.Duration)
	case sp.Duration.D() > maxDur:
		v.add("spec.duration", "must be at most %s, the server's cap (its flag --max-experiment-duration raises it); got %s", Duration(maxDur), *sp.Duration)
	}
}

func (v *validator) faultPercent(path string, p float64) {
	maxPct := v.opts.MaxFaultPercent
	switch {
	case p <= 0:
		v.add(path, "must be > 0 (the share of calls to hit, at most %s)", fmtNum(min(maxPct, 100)))
	case p > 100:
		v.add(path, "must be at most 100 (got %s)", fmtNum(p))
	case p > maxPct:
		v.add(path, "must be at most %s, the blast-radius cap (the server flag --max-fault-percent raises it); got %s", fmtNum(maxPct), fmtNum(p))
	}
}

// Field checks shared by every kind.

func (v *validator) name(path, s string) {
	if s == "" {
		v.add(path, "required")
		return
	}
	if !isDNSLabel(s) {
		v.add(path, "%s", labelMessage(s))
	}
}

func (v *validator) sources(srcs []string) {
	seen := map[string]int{}
	for i, s := range srcs {
		path := fmt.Sprintf("spec.sources[%d]", i)
		if j, dup := seen[s]; dup {
			v.add(path, "%q is listed twice (first at spec.sources[%d])", s, j)
			continue
		}
		seen[s] = i
		v.name(path, s)
	}
}

// label checks one label (or selector entry) under path.
func (v *validator) label(path, key, value string) {
	p := path + "." + key
	if msg := labelKeyMessage(key); msg != "" {
		v.add(p, "%s", msg)
	}
	if len(value) > 63 {
		v.add(p, "label value must be at most 63 characters (got %d)", len(value))
	} else if value != "" && !isLabelName(value) {
		v.add(p, "invalid label value %q: use letters, digits, '-', '_' and '.', starting and ending with a letter or digit", value)
	}
}

func (v *validator) port(path string, p int) {
	if p < 1 || p > 65535 {
		v.add(path, "must be between 1 and 65535 (got %d)", p)
	}
}

func (v *validator) pathPrefix(path, p string) {
	switch {
	case p == "":
		v.add(path, `required: a path prefix starting with "/", such as /charge`)
	case !strings.HasPrefix(p, "/"):
		v.add(path, `must start with "/" (got %q)`, p)
	case p == "/":
		v.add(path, `"/" is the whole service: drop target.route instead`)
	case strings.ContainsAny(p, "?# \t\r\n\x00"):
		v.add(path, "must be a plain path without query, fragment or whitespace (got %q)", p)
	case len(p) > 1024:
		v.add(path, "must be at most 1024 characters")
	}
}

// positive checks that a set duration is > 0.
func (v *validator) positive(path string, d *Duration) {
	if d != nil && d.D() <= 0 {
		v.add(path, "must be > 0 (got %s)", *d)
	}
}

// atLeast checks that a set integer is >= lo.
func (v *validator) atLeast(path string, n *int, lo int) {
	if n != nil && *n < lo {
		v.add(path, "must be at least %d (got %d)", lo, *n)
	}
}

// between checks that a set integer lies in [lo, hi].
func (v *validator) between(path string, n *int, lo, hi int) {
	if n != nil && (*n < lo || *n > hi) {
		v.add(path, "must be between %d and %d (got %d)", lo, hi, *n)
	}
}

// Name syntax.

// isDNSLabel reports whether s is a DNS-1123 label: 1-63 characters of
// [a-z0-9-], starting and ending with a letter or digit.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

func labelMessage(s string) string {
	if len(s) > 63 {
		return fmt.Sprintf("must be a DNS-1123 label of at most 63 characters (got %d)", len(s))
	}
	return fmt.Sprintf("must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit (got %q)", s)
}

// isHostname reports whether s is an RFC 1123 hostname (any case, an
// optional trailing dot).
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if !isDNSLabel(strings.ToLower(part)) {
			return false
		}
	}
	return true
}

// isLabelName reports whether s is the name part of a label key or a label
// value: 1-63 characters of [A-Za-z0-9-_.], alphanumeric at both ends.
func isLabelName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && ((c != '-' && c != '_' && c != '.') || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// labelKeyMessage returns why key is not a valid label key ("tier",
// "example.com/tier"), or "".
func labelKeyMessage(key string) string {
	prefix, name, hasPrefix := strings.Cut(key, "/")
	if !hasPrefix {
		prefix, name = "", key
	}
	switch {
	case key == "":
		return "label key must not be empty"
	case hasPrefix && (len(prefix) > 253 || !isHostname(prefix) || strings.ToLower(prefix) != prefix || strings.HasSuffix(prefix, ".")):
		return fmt.Sprintf("invalid label key prefix %q: use a lower-case DNS subdomain such as example.com", prefix)
	case !isLabelName(name):
		return fmt.Sprintf("invalid label key %q: use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit, after an optional prefix/", key)
	}
	return ""
}

// isHeaderName reports whether s is an HTTP header name (an RFC 9110 token,
// or a pseudo-header such as ":authority").
func isHeaderName(s string) bool {
	s = strings.TrimPrefix(s, ":")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func isInstanceName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// fmtNum prints a number without a needless fraction: 50, 12.5.
func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// setFields lists what a policy spec sets, as paths below spec in field
// order: every set leaf ("retries.backoff.max"), each health-check probe as
// one leaf ("healthCheck.http"), and a section set with nothing inside it
// ("circuitBreaker"), which turns the feature on with its defaults.
func setFields(sp *PolicySpec) []string {
	var out []string
	collectSet(reflect.ValueOf(sp).Elem(), "", &out)
	return out
}

func collectSet(v reflect.Value, path string, out *[]string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if path == "" && (name == "target" || name == "sources") {
			continue
		}
		fv := v.Field(i)
		if fv.IsZero() {
			continue
		}
		leaf := join(path, name)
		if fv.Kind() == reflect.Pointer && fv.Elem().Kind() == reflect.Struct && !(path == "healthCheck" && probeFields[name]) {
			n := len(*out)
			collectSet(fv.Elem(), leaf, out)
			if len(*out) == n {
				*out = append(*out, leaf)
			}
			continue
		}
		*out = append(*out, leaf)
	}
}

// routeLevel reports whether a route-targeted policy may set field (a leaf
// or a section from setFields).
func routeLevel(field string) bool {
	return slices.ContainsFunc(RouteLevelFields, func(f string) bool {
		return f == field || strings.HasPrefix(f, field+".")
	})
}
