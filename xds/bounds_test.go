package xds

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// boundsContext is what a policy must also set for a leaf to reach the IR
// and be checked there: retries need attempts (the default, 2, will do),
// a health check needs a probe.
func boundsContext(leaf string) string {
	switch {
	case leaf == "healthCheck.http.expectedStatuses":
		return `healthCheck: {http: {path: /hc}}`
	case strings.HasPrefix(leaf, "healthCheck."):
		return `healthCheck: {tcp: {}}`
	case strings.HasPrefix(leaf, "retries."):
		return `retries: {}`
	}
	return `bulkhead: {}`
}

// setLeaf sets a leaf of spec, creating the sections above it; a list leaf
// gets v as its only item.
func setLeaf(spec *policies.PolicySpec, l policies.Leaf, v any) {
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
	switch {
	case rv.Kind() == reflect.Slice:
		s := reflect.MakeSlice(rv.Type(), 1, 1)
		s.Index(0).Set(val.Convert(rv.Type().Elem()))
		rv.Set(s)
	case rv.Kind() == reflect.Pointer:
		p := reflect.New(rv.Type().Elem())
		p.Elem().Set(val.Convert(rv.Type().Elem()))
		rv.Set(p)
	}
}

// boundaryValues are the values on and just past each side of a leaf's
// bound, from the table both layers read.
func boundaryValues(l policies.Leaf) []any {
	elem := l.Type
	if elem.Kind() == reflect.Pointer || elem.Kind() == reflect.Slice {
		elem = elem.Elem()
	}
	switch {
	case elem == reflect.TypeOf(policies.Duration(0)):
		return []any{policies.Duration(-time.Second), policies.Duration(0), policies.Duration(1), policies.Duration(policies.MaxDuration),
			policies.Duration(policies.MaxDuration + 1), policies.Off}
	case elem.Kind() == reflect.Int:
		r := policies.IntBound(l.Path)
		return []any{r.Min - 1, r.Min, r.Max, r.Max + 1}
	case elem.Kind() == reflect.Float64:
		r := policies.NumberBound(l.Path)
		return []any{r.Min - 0.0005, r.Min, r.Max, r.Max + 0.5}
	}
	return nil
}

// TestPolicyAndIRBoundsAgree checks every numeric and duration leaf on
// both sides of its bound: a value policy validation accepts resolves into
// an IR that passes its validation and translates (every resource passes
// ValidateAll), and a value it refuses is refused by the IR too, for both
// flavors. "off" is the policy's word for what the IR writes as 0s.
func TestPolicyAndIRBoundsAgree(t *testing.T) {
	checked := 0
	for _, l := range policies.PolicyLeaves() {
		values := boundaryValues(l)
		for _, v := range values {
			checked++
			name := fmt.Sprintf("%s=%v", l.Path, v)
			t.Run(name, func(t *testing.T) {
				rs, err := policies.DecodeAll([]byte(`
apiVersion: bulwark/v1
kind: Service
metadata: {name: payments}
spec: {port: 8080, protocol: http2, endpoints: [{address: 10.0.0.1, port: 9001}]}
---
apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: p}
spec: {target: {service: payments}, ` + boundsContext(l.Path) + `}`))
				require.NoError(t, err)
				p := rs[1].(*policies.ResiliencePolicy)
				setLeaf(&p.Spec, l, v)
				policyOK := len(policies.Validate(p, policies.ValidateOptions{})) == 0
				if policies.OffAllowed(l.Path) && v == policies.Duration(0) {
					// A policy writes "off", not 0s, for no timeout; the IR
					// writes off as 0s, so it accepts the 0s that a policy
					// refuses. Nothing else differs.
					require.False(t, policyOK, "a policy spells no timeout off")
					return
				}
				for _, flavor := range []ir.Flavor{ir.FlavorEnvoy, ir.FlavorGRPC} {
					res, errs := Render(policies.NewSet(rs...), flavor, "")
					irOK := len(errs) == 0 && res != nil && len(res.Clusters) > 0
					require.Equal(t, policyOK, irOK, "%s: policy validation: %v; %s: %v", name, policies.Validate(p, policies.ValidateOptions{}), flavor, errs)
				}
			})
		}
	}
	require.Greater(t, checked, 100, "every numeric and duration leaf is checked")
}
