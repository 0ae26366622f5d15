package policies

import (
	"reflect"
	"strings"
	"sync"
)

// The fields of our resource types, computed once per type and shared by the
// decoder (which walks every resource type by its JSON names) and by the walk
// over the settings of a PolicySpec (merge, the set-field list, the leaf
// list the coverage tests check).

// jsonField is one field of a struct as its JSON tag names it.
type jsonField struct {
	name  string
	index []int // through inline (anonymous) structs
	// serverOwned marks what only the server writes (status): decoded from
	// stored values, never from input.
	serverOwned bool
}

// fieldTable lists the JSON fields of one struct type, in field order.
type fieldTable struct {
	list   []jsonField
	byName map[string]int // name → position in list
}

var fieldTables sync.Map // reflect.Type → *fieldTable

// fieldsOf returns the JSON fields of struct type t, inline structs
// flattened. The table is computed once per type.
func fieldsOf(t reflect.Type) *fieldTable {
	if v, ok := fieldTables.Load(t); ok {
		return v.(*fieldTable)
	}
	ft := &fieldTable{byName: map[string]int{}}
	var add func(t reflect.Type, prefix []int)
	add = func(t reflect.Type, prefix []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			name, opts, _ := strings.Cut(tag, ",")
			if tag == "-" {
				continue
			}
			index := append(append([]int(nil), prefix...), i)
			if f.Anonymous && strings.Contains(opts, "inline") {
				add(f.Type, index)
				continue
			}
			if name == "" {
				name = f.Name
			}
			ft.byName[name] = len(ft.list)
			ft.list = append(ft.list, jsonField{name: name, index: index, serverOwned: name == "status"})
		}
	}
	add(t, nil)
	v, _ := fieldTables.LoadOrStore(t, ft)
	return v.(*fieldTable)
}

// ProbeLeaf is the leaf under which a health check's probe (http, grpc or
// tcp, of which exactly one may be set) merges and conflicts: the most
// specific policy that names a probe provides it whole.
const ProbeLeaf = "healthCheck.probe"

// probeSections are the sections of PolicySpec that merge as ProbeLeaf.
var probeSections = map[string]bool{"healthCheck.http": true, "healthCheck.grpc": true, "healthCheck.tcp": true}

// nodeKind says how the walk treats a field of PolicySpec.
type nodeKind int

const (
	nodeLeaf    nodeKind = iota // a scalar, duration or list: one setting
	nodeSection                 // a pointer to a struct of settings, walked field by field
	nodeProbe                   // a health-check probe: a section that counts as one setting
)

// specNode is one field of PolicySpec below spec, with its sub-fields.
type specNode struct {
	path     string // "retries.backoff.base"
	field    int    // index in the enclosing struct
	kind     nodeKind
	children []specNode // sections and probes
}

// specTree is the tree of PolicySpec's settings: every field but target and
// sources, which select calls rather than shape them.
var specTree = sync.OnceValue(func() []specNode {
	return buildNodes(reflect.TypeOf(PolicySpec{}), "")
})

func buildNodes(t reflect.Type, path string) []specNode {
	var out []specNode
	for _, f := range fieldsOf(t).list {
		if path == "" && (f.name == "target" || f.name == "sources") {
			continue
		}
		n := specNode{path: join(path, f.name), field: f.index[0]}
		ft := t.Field(f.index[0]).Type
		if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
			n.kind = nodeSection
			if probeSections[n.path] {
				n.kind = nodeProbe
			}
			n.children = buildNodes(ft.Elem(), n.path)
		}
		out = append(out, n)
	}
	return out
}

// Leaf is one setting of a PolicySpec: a scalar, a duration, a list, or a
// field of a health-check probe.
type Leaf struct {
	// Path is the dotted JSON path below spec: "retries.backoff.base".
	Path string
	// Index is the path of field indexes from PolicySpec, through pointers.
	Index []int
	// Type is the field's Go type.
	Type reflect.Type
	// Probe is the health-check probe the leaf belongs to
	// ("healthCheck.http"), or the probe itself for one without fields
	// (healthCheck.tcp); "" for every other leaf. The fields of the probes
	// merge together as ProbeLeaf.
	Probe string
}

// MergeKey is the name under which the leaf merges: its path, or ProbeLeaf
// for a probe's fields. Effective.From and conflicts use it.
func (l Leaf) MergeKey() string {
	if l.Probe != "" {
		return ProbeLeaf
	}
	return l.Path
}

// policyLeaves is the flat list of PolicySpec's leaves, in field order.
var policyLeaves = sync.OnceValue(func() []Leaf {
	var out []Leaf
	var walk func(t reflect.Type, nodes []specNode, index []int, probe string)
	walk = func(t reflect.Type, nodes []specNode, index []int, probe string) {
		for _, n := range nodes {
			idx := append(append([]int(nil), index...), n.field)
			ft := t.Field(n.field).Type
			p := probe
			if n.kind == nodeProbe {
				p = n.path
			}
			if n.kind == nodeLeaf || (n.kind == nodeProbe && len(n.children) == 0) {
				out = append(out, Leaf{Path: n.path, Index: idx, Type: ft, Probe: p})
				continue
			}
			walk(ft.Elem(), n.children, idx, p)
		}
	}
	walk(reflect.TypeOf(PolicySpec{}), specTree(), nil, "")
	return out
})

// PolicyLeaves returns every leaf of PolicySpec in field order. The slice is
// shared: do not modify it. Adding a field to PolicySpec adds a leaf here, and
// the coverage tests then ask for its validation, merge, translation,
// documentation and schema.
func PolicyLeaves() []Leaf { return policyLeaves() }

// value returns the leaf's value in sp, and false when it or a section above
// it is unset.
func (l Leaf) value(sp *PolicySpec) (reflect.Value, bool) {
	v := reflect.ValueOf(sp).Elem()
	for i, x := range l.Index {
		v = v.Field(x)
		if v.IsZero() {
			return reflect.Value{}, false
		}
		if i < len(l.Index)-1 {
			v = v.Elem()
		}
	}
	return v, true
}

// SetLeaves lists the leaves sp sets, by path, in field order. A probe's
// fields are listed one by one (healthCheck.http.path); a probe without
// fields (healthCheck.tcp) is listed itself.
func SetLeaves(sp *PolicySpec) []string {
	var out []string
	for _, l := range PolicyLeaves() {
		if _, ok := l.value(sp); ok {
			out = append(out, l.Path)
		}
	}
	return out
}

// mergeSpec copies each leaf set in src and not yet taken into dst. take is
// asked for each leaf src sets (by merge key) and says whether src provides
// it. A section src sets, even empty, is created in dst: an empty section
// turns its feature on with the defaults.
func mergeSpec(dst, src *PolicySpec, take func(leaf string) bool) {
	mergeNodes(specTree(), reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem(), take)
}

func mergeNodes(nodes []specNode, dst, src reflect.Value, take func(leaf string) bool) {
	probeTaken := false
	for i := range nodes {
		n := &nodes[i]
		sv := src.Field(n.field)
		if sv.IsZero() {
			continue
		}
		dv := dst.Field(n.field)
		switch n.kind {
		case nodeProbe:
			// One of http, grpc, tcp: the first (most specific) policy to set
			// any of them provides the probe; the others are dropped.
			if probeTaken || !take(ProbeLeaf) {
				continue
			}
			probeTaken = true
			dv.Set(sv)
		case nodeSection:
			if dv.IsNil() {
				dv.Set(reflect.New(sv.Type().Elem()))
			}
			mergeNodes(n.children, dv.Elem(), sv.Elem(), take)
		default:
			if take(n.path) {
				dv.Set(sv)
			}
		}
	}
}

// setFields lists what a policy spec sets, as paths below spec in field
// order: every set leaf ("retries.backoff.max"), each health-check probe as
// one field ("healthCheck.http"), and a section set with nothing inside it
// ("circuitBreaker"), which turns the feature on with its defaults.
func setFields(sp *PolicySpec) []string {
	var out []string
	collectSet(specTree(), reflect.ValueOf(sp).Elem(), &out)
	return out
}

func collectSet(nodes []specNode, v reflect.Value, out *[]string) {
	for i := range nodes {
		n := &nodes[i]
		fv := v.Field(n.field)
		if fv.IsZero() {
			continue
		}
		if n.kind == nodeSection {
			before := len(*out)
			collectSet(n.children, fv.Elem(), out)
			if len(*out) == before {
				*out = append(*out, n.path)
			}
			continue
		}
		*out = append(*out, n.path)
	}
}
