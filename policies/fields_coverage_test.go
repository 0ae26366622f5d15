package policies

import (
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Field coverage, policy side: every leaf of PolicySpec (PolicyLeaves) has
// a validation rule and merges by precedence. xds/coverage_test.go checks
// its translation, documentation and schema. Adding a field to PolicySpec
// makes these tests fail until each is done.

// ruleCases holds, for each leaf without a numeric or duration bound, a
// spec that breaks its rule and the field the violation must name.
var ruleCases = map[string]struct{ spec, field string }{
	"retries.on":                   {`retries: {on: [sometimes]}`, "spec.retries.on[0]"},
	"retries.methods":              {`retries: {methods: [get]}`, "spec.retries.methods[0]"},
	"healthCheck.http.path":        {`healthCheck: {http: {path: health}}`, "spec.healthCheck.http.path"},
	"healthCheck.grpc.serviceName": {`healthCheck: {grpc: {serviceName: "pay v1"}}`, "spec.healthCheck.grpc.serviceName"},
	"healthCheck.tcp":              {`healthCheck: {tcp: {}, http: {path: /hc}}`, "spec.healthCheck"}, // exactly one probe
	"fallback.service":             {`fallback: {service: Static}`, "spec.fallback.service"},
}

// leafElem is the leaf's type without its pointer or list.
func leafElem(l Leaf) reflect.Type {
	t := l.Type
	if t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t
}

// setLeaf sets a leaf of spec to v, creating the sections above it; a list
// leaf gets v as its only item, a struct leaf (a probe) is set to v itself.
func setLeaf(spec *PolicySpec, l Leaf, v any) {
	rv := reflect.ValueOf(spec).Elem()
	for i, x := range l.Index {
		rv = rv.Field(x)
		if i == len(l.Index)-1 {
			break
		}
		if rv.IsNil() {
			rv.Set(reflect.New(rv.Type().Elem()))
		}
		rv = rv.Elem()
	}
	val := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice:
		s := reflect.MakeSlice(rv.Type(), 1, 1)
		s.Index(0).Set(val.Convert(rv.Type().Elem()))
		rv.Set(s)
	case reflect.Pointer:
		if val.Type() == rv.Type() {
			rv.Set(val)
			return
		}
		p := reflect.New(rv.Type().Elem())
		p.Elem().Set(val.Convert(rv.Type().Elem()))
		rv.Set(p)
	default:
		rv.Set(val.Convert(rv.Type()))
	}
}

func policyWith(t *testing.T, name, target, spec string) *ResiliencePolicy {
	t.Helper()
	return decodeOne(t, doc("ResiliencePolicy", name, "{target: "+target+", "+spec+"}")).(*ResiliencePolicy)
}

// TestEveryLeafHasAValidationRule: each leaf has a bound (bounds.go) or a
// rule case above, none is left over, and each rule refuses its bad value at
// the leaf's path.
func TestEveryLeafHasAValidationRule(t *testing.T) {
	seen := map[string]bool{}
	for _, l := range PolicyLeaves() {
		seen[l.Path] = true
		t.Run(l.Path, func(t *testing.T) {
			var bad []any
			_, isInt := intRanges[l.Path]
			_, isNum := numberRanges[l.Path]
			rc, isRule := ruleCases[l.Path]
			switch elem := leafElem(l); {
			case elem == durationType:
				bad = []any{Duration(0), Duration(MaxDuration + time.Second)}
				if !OffAllowed(l.Path) {
					bad = append(bad, Off)
				}
			case elem.Kind() == reflect.Int:
				require.True(t, isInt, "%s: an integer leaf needs its range in bounds.go", l.Path)
				r := IntBound(l.Path)
				bad = []any{r.Min - 1, r.Max + 1}
			case elem.Kind() == reflect.Float64:
				require.True(t, isNum, "%s: a number leaf needs its range in bounds.go", l.Path)
				r := NumberBound(l.Path)
				bad = []any{r.Min - 0.0005, r.Max + 1}
			default:
				require.True(t, isRule, "%s: add its validation rule and a case to ruleCases", l.Path)
				p := policyWith(t, "p", "{service: payments}", rc.spec)
				require.Contains(t, fields(Validate(p, ValidateOptions{})), rc.field)
				return
			}
			require.False(t, isRule, "%s has a bound: drop it from ruleCases", l.Path)
			for _, v := range bad {
				p := policyWith(t, "p", "{service: payments}", `healthCheck: {tcp: {}}`)
				if l.Probe != "" {
					p.Spec.HealthCheck.TCP = nil
				}
				setLeaf(&p.Spec, l, v)
				want := "spec." + l.Path
				if l.Type.Kind() == reflect.Slice {
					want += "[0]"
				}
				require.Contains(t, fields(Validate(p, ValidateOptions{})), want, "%s = %v must be refused", l.Path, v)
			}
		})
	}
	for leaf := range ruleCases {
		require.True(t, seen[leaf], "ruleCases names %s, which is not a leaf", leaf)
	}
	for leaf := range intRanges {
		require.True(t, seen[leaf], "intRanges names %s, which is not a leaf", leaf)
	}
	for leaf := range numberRanges {
		require.True(t, seen[leaf], "numberRanges names %s, which is not a leaf", leaf)
	}
}

func fields(vs Violations) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Field
	}
	return out
}

// mergeValues returns two different values for a leaf, by its type.
func mergeValues(l Leaf) (low, high any) {
	switch elem := leafElem(l); {
	case elem == durationType:
		return Duration(time.Second), Duration(2 * time.Second)
	case elem.Kind() == reflect.Int:
		return 1, 2
	case elem.Kind() == reflect.Float64:
		return 1.5, 2.5
	case elem.Kind() == reflect.String:
		return "/low", "/high"
	case elem.Kind() == reflect.Struct: // a probe without fields: From tells who provided it
		return reflect.New(elem).Interface(), reflect.New(elem).Interface()
	}
	panic("no merge values for " + l.Path)
}

// TestEveryLeafMergesByPrecedence: a leaf set by the mesh default survives
// a service policy that does not set it, and the service policy wins when
// it does.
func TestEveryLeafMergesByPrecedence(t *testing.T) {
	for _, l := range PolicyLeaves() {
		t.Run(l.Path, func(t *testing.T) {
			low, high := mergeValues(l)
			other := "bulkhead.maxRequests"
			if l.Path == other {
				other = "timeouts.connect"
			}
			var otherLeaf Leaf
			for _, o := range PolicyLeaves() {
				if o.Path == other {
					otherLeaf = o
				}
			}
			mesh := &ResiliencePolicy{Metadata: Metadata{Name: "mesh"}, Spec: PolicySpec{Target: Target{Service: "*"}}}
			setLeaf(&mesh.Spec, l, low)
			svc := &ResiliencePolicy{Metadata: Metadata{Name: "svc"}, Spec: PolicySpec{Target: Target{Service: "payments"}}}
			a, _ := mergeValues(otherLeaf)
			setLeaf(&svc.Spec, otherLeaf, a)
			payments := &Service{Metadata: Metadata{Name: "payments"}, Spec: ServiceSpec{Port: 80}}

			eff := NewSet(payments, mesh, svc).Resolve("", "payments", "")
			got, ok := l.value(&eff.Spec)
			require.True(t, ok, "%s set by the mesh default is lost", l.Path)
			want, _ := l.value(&mesh.Spec)
			require.True(t, reflect.DeepEqual(want.Interface(), got.Interface()), "%s: got %v", l.Path, got)
			require.Equal(t, "mesh", eff.From[l.MergeKey()])

			setLeaf(&svc.Spec, l, high)
			eff = NewSet(payments, mesh, svc).Resolve("", "payments", "")
			got, ok = l.value(&eff.Spec)
			require.True(t, ok)
			want, _ = l.value(&svc.Spec)
			require.True(t, reflect.DeepEqual(want.Interface(), got.Interface()), "%s: got %v", l.Path, got)
			require.Equal(t, "svc", eff.From[l.MergeKey()])
			require.Empty(t, eff.Conflicts)
		})
	}
}
