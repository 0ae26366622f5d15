package policies

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
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
// A Service may have neither endpoints nor dns: its instances may register
// themselves through the API. A ChaosExperiment is checked against the
// guardrails in opts.
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

// add records a violation; past MaxViolations, one more says there were more.
func (v *validator) add(field, format string, args ...any) {
	switch {
	case len(v.vs) < MaxViolations:
		v.vs = append(v.vs, Violation{Field: field, Message: fmt.Sprintf(format, args...)})
	case len(v.vs) == MaxViolations:
		v.vs = append(v.vs, moreViolations())
	}
}

// Bounded returns at most MaxViolations of vs, and one more saying there
// were more when it cut.
func (vs Violations) Bounded() Violations {
	if len(vs) <= MaxViolations {
		return vs
	}
	return append(vs[:MaxViolations:MaxViolations], moreViolations())
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
	if msg := CheckSource(m.Source); msg != "" {
		v.add("metadata.source", "%s", msg)
	}
}

// MaxSourceLength bounds metadata.source (and the source of an apply): a
// directory sync's "dir:" and an absolute path fit.
const MaxSourceLength = 512

// CheckSource returns what is wrong with a source ("dir:/srv/policies",
// "ci", "team-payments"), or "" when it is fine: at most MaxSourceLength
// bytes of printable characters, no control characters (newlines, tabs),
// no surrounding spaces.
func CheckSource(s string) string {
	switch {
	case len(s) > MaxSourceLength:
		return fmt.Sprintf("must be at most %d bytes (got %d)", MaxSourceLength, len(s))
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case strings.TrimSpace(s) != s:
		return fmt.Sprintf("must not start or end with spaces (got %q)", s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return fmt.Sprintf("must hold printable characters only, no newline, tab or other control character (got %q)", s)
		}
	}
	return ""
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
		if len(v.vs) > MaxViolations {
			break // nothing more can be reported
		}
		path := fmt.Sprintf("spec.endpoints[%d]", i)
		for _, x := range ValidateEndpoint(path, ep) {
			v.add(x.Field, "%s", x.Message)
		}
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
		case !IsDNSLabel(d):
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
	if ep.Zone != "" && !IsDNSLabel(ep.Zone) {
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
	if sp.SteadyState != nil {
		v.steadyState(sp.SteadyState, sp.Duration)
	}
	maxDur := v.opts.MaxExperimentDuration
	switch {
	case sp.Duration == nil:
		v.add("spec.duration", "required: how long the experiment runs before it ends by itself, at most %s", Duration(maxDur))
	case sp.Duration.IsOff():
		v.add("spec.duration", "cannot be off: an experiment must end by itself, within %s", Duration(maxDur))
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
	if !IsDNSLabel(s) {
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

// positive checks that a set duration is > 0 and at most MaxDuration.
func (v *validator) positive(path string, d *Duration) {
	if d != nil {
		if msg := CheckDuration(*d, false); msg != "" {
			v.add(path, "%s", msg)
		}
	}
}
