package policies

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Violation is one problem with a resource, located by its field path
// ("spec.retries.backoff.max").
type Violation struct {
	Field   string `json:"field"`
	Message string `json:"message"`
	// Line is the 1-based line in the source document, when known.
	Line int `json:"line,omitempty"`
}

func (v Violation) String() string {
	if v.Field == "" {
		return v.Message
	}
	return v.Field + ": " + v.Message
}

// Violations is a list of violations; it is an error when not empty.
type Violations []Violation

func (vs Violations) Error() string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.String()
	}
	return strings.Join(parts, "; ")
}

// DocumentError reports the violations of one document of a bundle.
type DocumentError struct {
	// Index is the 0-based position of the document in its file or body.
	Index      int
	Kind, Name string
	Violations Violations
	// Partial is the resource as far as it decoded (unknown fields dropped,
	// mistyped fields left unset), so a caller can also validate what is
	// there and report every problem in one pass; nil when the document is
	// not a resource of a known kind.
	Partial Resource
}

func (e *DocumentError) Error() string {
	who := fmt.Sprintf("document %d", e.Index)
	if e.Kind != "" || e.Name != "" {
		who += " (" + strings.TrimSpace(e.Kind+" "+e.Name) + ")"
	}
	return who + ": " + e.Violations.Error()
}

// ValidatePartial validates what of the document decoded and returns the
// violations the decoder has not already reported: a field the decoder
// rejected, or one below or above it, is left out, since what validation says
// there repeats or follows from the decoding error. Together with
// e.Violations it is every problem of the document in one pass.
func (e *DocumentError) ValidatePartial(opts ValidateOptions) Violations {
	if e.Partial == nil {
		return nil
	}
	var out Violations
	for _, v := range Validate(e.Partial, opts) {
		if !e.Violations.overlaps(v.Field) {
			out = append(out, v)
		}
	}
	return out
}

// overlaps reports whether field is one of the violations' fields, lies
// below one, or contains one.
func (vs Violations) overlaps(field string) bool {
	for _, v := range vs {
		if v.Field == "" || field == "" || within(field, v.Field) || within(v.Field, field) {
			return true
		}
	}
	return false
}

// within reports whether path is parent or lies below it.
func within(path, parent string) bool {
	if !strings.HasPrefix(path, parent) {
		return false
	}
	rest := path[len(parent):]
	return rest == "" || rest[0] == '.' || rest[0] == '['
}

// DecodeErrors gathers the errors of every bad document of a bundle.
type DecodeErrors []*DocumentError

func (es DecodeErrors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// MaxDocuments bounds the number of documents in one bundle.
const MaxDocuments = 100000

// DecodeAll decodes a bundle: multi-document YAML, a JSON object, or a list
// object {"items": [...]}. Decoding is strict: unknown fields and wrong types
// are violations with their field paths. Every document is decoded even when
// an earlier one fails; the error is a DecodeErrors listing all bad documents.
func DecodeAll(data []byte) ([]Resource, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var (
		out  []Resource
		errs DecodeErrors
		idx  int
		b    budget
	)
	for !b.exhausted() {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, &DocumentError{Index: idx, Violations: Violations{syntaxViolation(err)}})
			break // the parser cannot resynchronise after a syntax error
		}
		if len(doc.Content) == 0 || isNull(doc.Content[0]) {
			continue // an empty document ("---" alone, or only comments)
		}
		root := doc.Content[0]
		if items := listItems(root); items != nil {
			for _, item := range items {
				if b.exhausted() {
					break
				}
				r, derr := decodeNode(item, idx, false, &b)
				idx++
				if derr != nil {
					errs = append(errs, derr)
					continue
				}
				out = append(out, r)
			}
			continue
		}
		r, derr := decodeNode(root, idx, false, &b)
		idx++
		if derr != nil {
			errs = append(errs, derr)
		} else {
			out = append(out, r)
		}
		if idx > MaxDocuments {
			errs = append(errs, &DocumentError{Index: idx, Violations: Violations{{Message: fmt.Sprintf("too many documents (limit %d)", MaxDocuments)}}})
			break
		}
	}
	if len(errs) > 0 {
		return out, errs
	}
	return out, nil
}

// DecodeOne decodes exactly one resource.
func DecodeOne(data []byte) (Resource, error) {
	rs, err := DecodeAll(data)
	if err != nil {
		return nil, err
	}
	if len(rs) != 1 {
		return nil, &DocumentError{Violations: Violations{{Message: fmt.Sprintf("expected one resource, found %d", len(rs))}}}
	}
	return rs[0], nil
}

// DecodeStored decodes one resource as the store keeps it: strict like
// DecodeAll, but admitting the server-owned status.
func DecodeStored(data []byte) (Resource, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("malformed value: %w", err)
	}
	if len(doc.Content) == 0 {
		return nil, errors.New("empty value")
	}
	r, derr := decodeNode(doc.Content[0], 0, true, &budget{})
	if derr != nil {
		return nil, derr
	}
	return r, nil
}

// isNull reports whether n is a null scalar: an empty document between two
// "---" lines parses as one.
func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// listItems returns the items of a {"items": [...]} or kind: List wrapper.
func listItems(n *yaml.Node) []*yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	var items *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch n.Content[i].Value {
		case "items":
			items = n.Content[i+1]
		case "kind":
			if n.Content[i+1].Value != "List" {
				return nil
			}
		case "apiVersion":
		default:
			return nil
		}
	}
	if items == nil || items.Kind != yaml.SequenceNode {
		return nil
	}
	return items.Content
}

// decodeNode decodes one resource from its YAML node.
func decodeNode(n *yaml.Node, idx int, stored bool, b *budget) (Resource, *DocumentError) {
	derr := &DocumentError{Index: idx}
	if n.Kind != yaml.MappingNode {
		derr.Violations = Violations{{Message: "a resource must be a mapping with apiVersion, kind, metadata and spec", Line: n.Line}}
		return nil, derr
	}
	var head struct {
		apiVersion, kind, name string
		line                   int
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "apiVersion":
			head.apiVersion = v.Value
		case "kind":
			head.kind, head.line = v.Value, v.Line
		case "metadata":
			for j := 0; j+1 < len(v.Content); j += 2 {
				if v.Content[j].Value == "name" {
					head.name = v.Content[j+1].Value
				}
			}
		}
	}
	derr.Kind, derr.Name = head.kind, head.name
	var r Resource
	switch head.kind {
	case KindService:
		r = &Service{}
	case KindPolicy:
		r = &ResiliencePolicy{}
	case KindExperiment:
		r = &ChaosExperiment{}
	case "":
		derr.Violations = Violations{{Field: "kind", Message: "required: one of Service, ResiliencePolicy, ChaosExperiment", Line: n.Line}}
		return nil, derr
	default:
		derr.Violations = Violations{{Field: "kind", Message: fmt.Sprintf("unknown kind %q: use Service, ResiliencePolicy or ChaosExperiment", head.kind), Line: head.line}}
		return nil, derr
	}
	d := &nodeDecoder{stored: stored, budget: b}
	d.decode(n, reflect.ValueOf(r).Elem(), "")
	if head.apiVersion != APIVersion {
		d.add("apiVersion", n.Line, fmt.Sprintf("must be %q, got %q", APIVersion, head.apiVersion))
	}
	if len(d.vs) > 0 {
		derr.Violations, derr.Partial = d.vs, r
		return nil, derr
	}
	return r, nil
}

// nodeDecoder walks a YAML node against a Go value, collecting violations.
type nodeDecoder struct {
	vs Violations
	// stored admits server-owned fields (status), present in stored values only.
	stored bool
	// budget is shared by every document of one bundle.
	budget *budget
}

// budget bounds the work and the report of one decoding (a whole bundle):
// YAML aliases can make a small body expand into an enormous one.
type budget struct {
	// steps counts the values and keys visited.
	steps int
	// violations counts the violations reported.
	violations int
}

// Bounds on the work and the report of one decoding.
const (
	// maxDecodeSteps bounds the YAML values one decoding visits: a 1 MiB body
	// of real resources holds well under 100,000 (an endpoint is 5).
	maxDecodeSteps = 1 << 18
	// MaxViolations bounds the violations reported for one resource, or one
	// decoded bundle; one more says that there were more.
	MaxViolations = 1000
)

// exhausted reports whether the budget is spent.
func (b *budget) exhausted() bool { return b.steps >= maxDecodeSteps || b.violations > MaxViolations }

func (d *nodeDecoder) add(path string, line int, msg string) {
	switch {
	case d.budget.violations < MaxViolations:
		d.vs = append(d.vs, Violation{Field: path, Message: msg, Line: line})
	case d.budget.violations == MaxViolations:
		d.vs = append(d.vs, moreViolations())
	default:
		return
	}
	d.budget.violations++
}

func moreViolations() Violation {
	return Violation{Message: fmt.Sprintf("more than %d problems; fix these first", MaxViolations)}
}

// step counts one value or key; it reports false, once with a violation,
// when the input is too large to decode (aliases expanding it).
func (d *nodeDecoder) step(path string, line int) bool {
	d.budget.steps++
	if d.budget.steps == maxDecodeSteps {
		// First: it explains the others (the decoding stopped there).
		d.vs = append([]Violation{{Field: path, Line: line, Message: fmt.Sprintf("the input expands to more than %d values (through YAML aliases?); simplify it", maxDecodeSteps)}}, d.vs...)
		d.budget.violations++
	}
	return d.budget.steps < maxDecodeSteps
}

var durationType = reflect.TypeOf(Duration(0))

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func (d *nodeDecoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if !d.step(path, n.Line) {
		return
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if v.Kind() == reflect.Pointer {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return // explicit null means unset
		}
		p := reflect.New(v.Type().Elem())
		before := len(d.vs)
		d.decode(n, p.Elem(), path)
		if len(d.vs) > before && p.Elem().Kind() != reflect.Struct {
			return // a mistyped value stays unset, as if it were not there
		}
		v.Set(p)
		return
	}
	if v.Type() == durationType {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			d.add(path, n.Line, "must be a duration string such as \"250ms\" or \"3s\"")
			return
		}
		dur, err := ParseDuration(n.Value)
		if err != nil {
			d.add(path, n.Line, err.Error())
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.add(path, n.Line, "must be a mapping of strings to strings")
			return
		}
		m := reflect.MakeMap(v.Type())
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if !d.step(path, k.Line) {
				return
			}
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				d.add(join(path, k.Value), k.Line, "duplicate key")
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, join(path, k.Value))
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.add(path, n.Line, "must be a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
			d.add(path, n.Line, "must be a string"+quoteHint(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int, reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.add(path, n.Line, "must be an integer")
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil || i > math.MaxInt32 || i < math.MinInt32 {
			d.add(path, n.Line, "integer out of range")
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			d.add(path, n.Line, "must be a number")
			return
		}
		f, err := strconv.ParseFloat(n.Value, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.add(path, n.Line, "must be a finite number")
			return
		}
		v.SetFloat(f)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.add(path, n.Line, "must be true or false")
			return
		}
		v.SetBool(n.Value == "true")
	default:
		d.add(path, n.Line, "unsupported field type "+v.Type().String())
	}
}

func quoteHint(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		return fmt.Sprintf(" (got %s; quote it: %q)", strings.TrimPrefix(n.Tag, "!!"), n.Value)
	}
	return ""
}

func (d *nodeDecoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.add(path, n.Line, "must be a mapping")
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !d.step(path, k.Line) {
			return
		}
		fp := join(path, k.Value)
		if seen[k.Value] {
			d.add(fp, k.Line, "duplicate key")
			continue
		}
		seen[k.Value] = true
		f, ok := fields.lookup(k.Value, d.stored)
		if !ok {
			d.add(fp, k.Line, "unknown field"+fields.suggest(k.Value, d.stored))
			continue
		}
		d.decode(val, v.FieldByIndex(f.index), fp)
	}
}

// lookup returns the field named name; server-owned fields only when
// stored, since they are never decoded from input.
func (ft *fieldTable) lookup(name string, stored bool) (jsonField, bool) {
	i, ok := ft.byName[name]
	if !ok || (ft.list[i].serverOwned && !stored) {
		return jsonField{}, false
	}
	return ft.list[i], true
}

// suggest names the known field an unknown one probably meant: the same
// but for case, or a small edit away (attemps → attempts).
func (ft *fieldTable) suggest(name string, stored bool) string {
	names := make([]string, 0, len(ft.list))
	for _, f := range ft.list {
		if stored || !f.serverOwned {
			names = append(names, f.name)
		}
	}
	return didYouMean(name, names)
}
