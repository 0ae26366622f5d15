package adminapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
)

// MaxBodyBytes bounds the body of every admin API request (1 MiB). Larger
// bundles are split into several applies.
const MaxBodyBytes = 1 << 20

// bodyFormat is how a request body is encoded.
type bodyFormat int

const (
	formatJSON bodyFormat = iota + 1
	formatYAML
)

// acceptedTypes lists the media types writes accept, for error messages.
const acceptedTypes = "application/json, application/yaml, application/x-yaml or text/yaml"

// formatOf maps a Content-Type header to a body format, or a 415 problem.
func formatOf(contentType string) (bodyFormat, *api.Problem) {
	if contentType == "" {
		return 0, api.NewProblem(http.StatusUnsupportedMediaType, api.ProblemMediaType, "no Content-Type: send "+acceptedTypes)
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return 0, api.NewProblem(http.StatusUnsupportedMediaType, api.ProblemMediaType, fmt.Sprintf("malformed Content-Type %q: send %s", contentType, acceptedTypes))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return 0, api.NewProblem(http.StatusUnsupportedMediaType, api.ProblemMediaType, fmt.Sprintf("charset %q: bodies must be UTF-8", cs))
	}
	switch mt {
	case "application/json":
		return formatJSON, nil
	case "application/yaml", "application/x-yaml", "text/yaml":
		return formatYAML, nil
	}
	return 0, api.NewProblem(http.StatusUnsupportedMediaType, api.ProblemMediaType, fmt.Sprintf("Content-Type %s is not accepted: send %s", mt, acceptedTypes))
}

// readBody checks the content type and reads at most MaxBodyBytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bodyFormat, error) {
	format, p := formatOf(r.Header.Get("Content-Type"))
	if p != nil {
		return nil, 0, p
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, 0, err
		}
		return nil, 0, api.Invalid("reading the request body: " + err.Error())
	}
	return data, format, nil
}

// ParseBundle decodes a request body of the given Content-Type into
// resources: multi-document YAML, one JSON object, or {"items": [...]}.
// Decoding is strict; every bad document is reported with its field paths
// ("items[2].spec.retries.attempts"). It is what POST /v1/apply runs on its
// body.
func ParseBundle(contentType string, body []byte) ([]policies.Resource, error) {
	format, p := formatOf(contentType)
	if p != nil {
		return nil, p
	}
	return parseBody(format, body)
}

func parseBody(format bodyFormat, body []byte) ([]policies.Resource, error) {
	if format == formatJSON {
		if err := checkJSON(body); err != nil {
			return nil, err
		}
	}
	rs, err := policies.DecodeAll(body)
	if err != nil {
		var des policies.DecodeErrors
		if !errors.As(err, &des) {
			return nil, api.Invalid(err.Error())
		}
		var vs []api.Violation
		for _, de := range des {
			if len(vs) > policies.MaxViolations {
				break
			}
			// Guardrails are the server's to judge once the document decodes.
			lax := policies.ValidateOptions{MaxFaultPercent: 100, MaxExperimentDuration: math.MaxInt64}
			all := append(append(policies.Violations(nil), de.Violations...), de.ValidatePartial(lax)...)
			vs = append(vs, api.FromViolations(fmt.Sprintf("items[%d]", de.Index), all)...)
		}
		return nil, api.Invalid(api.Summary(len(des), "invalid document(s)", vs), vs...)
	}
	if len(rs) == 0 {
		return nil, api.Invalid("the body holds no resource", api.Violation{Field: "items", Message: "no resource: send one or more documents with apiVersion, kind, metadata and spec"})
	}
	return rs, nil
}

// checkJSON reports malformed JSON with its byte offset, which reads better
// than what the YAML parser would say about it.
func checkJSON(body []byte) error {
	var v any
	err := json.Unmarshal(body, &v)
	if err == nil {
		return nil
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return api.Invalid("malformed JSON at byte " + strconv.FormatInt(se.Offset, 10) + ": " + se.Error())
	}
	return api.Invalid("malformed JSON: " + err.Error())
}

// parseOne decodes a body that must hold exactly one resource of kind named
// name (the path's).
func parseOne(format bodyFormat, body []byte, kind, name string) (policies.Resource, error) {
	rs, err := parseBody(format, body)
	if err != nil {
		var p *api.Problem
		if errors.As(err, &p) && len(rs) == 0 {
			// One resource: its fields need no items[0] prefix.
			for i := range p.Violations {
				p.Violations[i].Field = strings.TrimPrefix(strings.TrimPrefix(p.Violations[i].Field, "items[0]"), ".")
			}
		}
		return nil, err
	}
	if len(rs) != 1 {
		return nil, api.Invalid(fmt.Sprintf("the body holds %d resources; PUT takes one (POST /v1/apply takes bundles)", len(rs)))
	}
	r := rs[0]
	if r.GetKind() != kind {
		return nil, api.Invalid(fmt.Sprintf("kind %s cannot be written at this path, which takes a %s", r.GetKind(), kind),
			api.Violation{Field: "kind", Message: fmt.Sprintf("must be %s at this path, got %s", kind, r.GetKind())})
	}
	if got := r.GetMeta().Name; got != name {
		return nil, api.Invalid(fmt.Sprintf("metadata.name %q differs from the name in the path %q", got, name),
			api.Violation{Field: "metadata.name", Message: fmt.Sprintf("must match the name in the path (%q), got %q", name, got)})
	}
	return r, nil
}

// reservedExperimentNames are the experiment names that would collide with
// the fixed routes under /v1/experiments/.
var reservedExperimentNames = map[string]bool{"history": true, "stop": true}

// checkReserved refuses experiments that could not be read back by name.
func checkReserved(rs []policies.Resource) error {
	var vs []api.Violation
	for i, r := range rs {
		if r.GetKind() == policies.KindExperiment && reservedExperimentNames[r.GetMeta().Name] {
			field := "metadata.name"
			if len(rs) > 1 {
				field = fmt.Sprintf("items[%d].metadata.name", i)
			}
			vs = append(vs, api.Violation{Field: field, Message: fmt.Sprintf("%q is reserved (GET /v1/experiments/%s is a fixed route); choose another name", r.GetMeta().Name, r.GetMeta().Name)})
		}
	}
	if len(vs) > 0 {
		return api.Invalid("reserved experiment name", vs...)
	}
	return nil
}

// ifMatch parses an If-Match header: a store revision, bare or quoted as an
// ETag. 0 means no header.
func ifMatch(r *http.Request) (int64, error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" {
		return 0, nil
	}
	v := strings.Trim(strings.TrimPrefix(h, "W/"), `"`)
	rev, err := strconv.ParseInt(v, 10, 64)
	if err != nil || rev <= 0 {
		return 0, api.Invalid("If-Match must be a positive store revision (metadata.revision), got "+strconv.Quote(h),
			api.Violation{Field: "If-Match", Message: "must be a positive store revision"})
	}
	return rev, nil
}

// boolParam reads an optional boolean query parameter.
func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, api.Invalid(fmt.Sprintf("query parameter %s must be true or false, got %q", name, v),
			api.Violation{Field: name, Message: "must be true or false"})
	}
	return b, nil
}
