package policies

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// decodeErrs decodes a bundle and returns the resources and its DecodeErrors.
func decodeErrs(t *testing.T, in string) ([]Resource, DecodeErrors) {
	t.Helper()
	rs, err := DecodeAll([]byte(in))
	if err == nil {
		return rs, nil
	}
	var des DecodeErrors
	require.ErrorAs(t, err, &des)
	for _, de := range des {
		de.Partial = nil // compared on its own in TestDecodeKeepsWhatDecoded
	}
	return rs, des
}

// A document that fails strict decoding keeps what did decode, so a caller
// can validate it too; mistyped values stay unset.
func TestDecodeKeepsWhatDecoded(t *testing.T) {
	_, err := DecodeAll([]byte(`apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: 3, idle: 60s}
  retries: {attempts: two, perTryTimeout: 1s, backof: {base: 25ms}}
`))
	var des DecodeErrors
	require.ErrorAs(t, err, &des)
	require.Len(t, des, 1)
	p, ok := des[0].Partial.(*ResiliencePolicy)
	require.True(t, ok, "the partial resource is a ResiliencePolicy")
	require.Equal(t, PolicySpec{
		Target:   Target{Service: "payments"},
		Timeouts: &Timeouts{Idle: Dur(time.Minute)},
		Retries:  &Retries{PerTryTimeout: Dur(time.Second)},
	}, p.Spec)

	_, err = DecodeAll([]byte("apiVersion: bulwark/v1\nkind: Gateway\nmetadata: {name: x}\n"))
	require.ErrorAs(t, err, &des)
	require.Nil(t, des[0].Partial, "no partial resource for an unknown kind")
}

func TestDecodeUnknownFieldAndWrongTypeTogether(t *testing.T) {
	in := `apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: payments}
spec:
  target: {service: payments}
  timeouts: {request: 3}
  retries:
    attempts: two
    backof: {base: 25ms}
`
	rs, errs := decodeErrs(t, in)
	require.Empty(t, rs)
	require.Equal(t, DecodeErrors{{Index: 0, Kind: KindPolicy, Name: "payments", Violations: Violations{
		{Field: "spec.timeouts.request", Message: `must be a duration string such as "250ms" or "3s"`, Line: 6},
		{Field: "spec.retries.attempts", Message: "must be an integer", Line: 8},
		{Field: "spec.retries.backof", Message: `unknown field (did you mean "backoff"?)`, Line: 9},
	}}}, errs)
	require.Equal(t, "document 0 (ResiliencePolicy payments): spec.timeouts.request: must be a duration string such as \"250ms\" or \"3s\"; "+
		"spec.retries.attempts: must be an integer; spec.retries.backof: unknown field (did you mean \"backoff\"?)", errs.Error())
}

func TestDecodeMultiDocumentYAML(t *testing.T) {
	in := doc("Service", "payments", "{port: 8080, endpoints: [{address: 10.0.0.1, port: 9001}]}") + "---\n" +
		doc("ResiliencePolicy", "payments", "{target: {service: payments}, timeouts: {request: 3s}, retries: {attempts: 2}}") + "---\n" +
		doc("ChaosExperiment", "payments-503", "{target: {service: payments}, abort: {percent: 10, httpStatus: 503}, duration: 10m}")
	rs, errs := decodeErrs(t, in)
	require.Nil(t, errs)
	require.Equal(t, []Resource{
		&Service{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindService}, Metadata: Metadata{Name: "payments"},
			Spec: ServiceSpec{Port: 8080, Endpoints: []Endpoint{{Address: "10.0.0.1", Port: 9001}}}},
		&ResiliencePolicy{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindPolicy}, Metadata: Metadata{Name: "payments"},
			Spec: PolicySpec{Target: Target{Service: "payments"}, Timeouts: &Timeouts{Request: Dur(3 * time.Second)}, Retries: &Retries{Attempts: Ptr(2)}}},
		&ChaosExperiment{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindExperiment}, Metadata: Metadata{Name: "payments-503"},
			Spec: ExperimentSpec{Target: Target{Service: "payments"}, Abort: &Abort{Percent: 10, HTTPStatus: 503}, Duration: Dur(10 * time.Minute)}},
	}, rs)
}

func TestDecodeJSON(t *testing.T) {
	want := &ResiliencePolicy{TypeMeta: TypeMeta{APIVersion: APIVersion, Kind: KindPolicy}, Metadata: Metadata{Name: "p", Labels: map[string]string{"team": "pay"}},
		Spec: PolicySpec{Target: Target{Service: "*"}, Timeouts: &Timeouts{Request: Dur(1500 * time.Millisecond)},
			Retries: &Retries{On: []string{"5xx"}, Budget: &Budget{Percent: Ptr(12.5)}}}}
	for name, in := range map[string]string{
		"compact": `{"apiVersion":"bulwark/v1","kind":"ResiliencePolicy","metadata":{"name":"p","labels":{"team":"pay"}},` +
			`"spec":{"target":{"service":"*"},"timeouts":{"request":"1.5s"},"retries":{"on":["5xx"],"budget":{"percent":12.5}}}}`,
		"tab indented": "{\n\t\"apiVersion\": \"bulwark/v1\",\n\t\"kind\": \"ResiliencePolicy\",\n\t\"metadata\": {\n\t\t\"name\": \"p\",\n\t\t\"labels\": {\"team\": \"pay\"}\n\t},\n" +
			"\t\"spec\": {\n\t\t\"target\": {\"service\": \"*\"},\n\t\t\"timeouts\": {\"request\": \"1500ms\"},\n\t\t\"retries\": {\"on\": [\"5xx\"], \"budget\": {\"percent\": 12.5}}\n\t}\n}",
	} {
		t.Run(name, func(t *testing.T) {
			r, err := DecodeOne([]byte(in))
			require.NoError(t, err)
			require.Equal(t, want, r)
		})
	}

	// Wrong JSON types are reported with their paths too.
	_, errs := decodeErrs(t, `{"apiVersion":"bulwark/v1","kind":"Service","metadata":{"name":"s"},"spec":{"port":"80","endpoints":{"address":"a"}}}`)
	require.Equal(t, DecodeErrors{{Index: 0, Kind: KindService, Name: "s", Violations: Violations{
		{Field: "spec.port", Message: "must be an integer", Line: 1},
		{Field: "spec.endpoints", Message: "must be a list", Line: 1},
	}}}, errs)
}

func TestDecodeItemsBundle(t *testing.T) {
	in := `{"items": [
  {"apiVersion": "bulwark/v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"port": 80}},
  {"apiVersion": "bulwark/v1", "kind": "Service", "metadata": {"name": "b"}, "spec": {"port": 80, "colour": "red"}},
  {"apiVersion": "bulwark/v1", "kind": "Service", "metadata": {"name": "c"}, "spec": {"port": 81}}
]}`
	rs, errs := decodeErrs(t, in)
	require.Len(t, rs, 2)
	require.Equal(t, "a", rs[0].GetMeta().Name)
	require.Equal(t, "c", rs[1].GetMeta().Name)
	require.Equal(t, DecodeErrors{{Index: 1, Kind: KindService, Name: "b", Violations: Violations{
		{Field: "spec.colour", Message: "unknown field", Line: 3},
	}}}, errs)

	// A YAML list with apiVersion and kind: List, then a plain document: the
	// indexes run on across both.
	in = "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(doc("Service", "a", "{port: 80}"), "\n", "\n  ") +
		"\n---\n" + doc("Service", "b", "{port: 0x50, prot: http}")
	rs, errs = decodeErrs(t, in)
	require.Len(t, rs, 1)
	require.Equal(t, 80, rs[0].(*Service).Spec.Port)
	require.Equal(t, DecodeErrors{{Index: 1, Kind: KindService, Name: "b", Violations: Violations{
		{Field: "spec.prot", Message: `unknown field (did you mean "port"?)`, Line: 13},
	}}}, errs)
}

func TestDecodeDuplicateKeys(t *testing.T) {
	in := `apiVersion: bulwark/v1
kind: Service
metadata:
  name: a
  labels: {tier: x, tier: y}
spec: {port: 80, port: 81}
`
	_, errs := decodeErrs(t, in)
	require.Equal(t, DecodeErrors{{Index: 0, Kind: KindService, Name: "a", Violations: Violations{
		{Field: "metadata.labels.tier", Message: "duplicate key", Line: 5},
		{Field: "spec.port", Message: "duplicate key", Line: 6},
	}}}, errs)
}

func TestDecodeMalformedYAMLKeepsEarlierDocuments(t *testing.T) {
	in := doc("Service", "a", "{port: 80}") + "---\nkind: [unclosed\n"
	rs, errs := decodeErrs(t, in)
	require.Len(t, rs, 1)
	require.Equal(t, "a", rs[0].GetMeta().Name)
	require.Len(t, errs, 1)
	require.Equal(t, 1, errs[0].Index)
	require.Len(t, errs[0].Violations, 1)
	require.True(t, strings.HasPrefix(errs[0].Violations[0].Message, "malformed YAML: line "), errs[0].Violations[0].Message)

	_, err := DecodeOne([]byte("a: b: c"))
	require.ErrorContains(t, err, "malformed YAML")
}

func TestDecodeEmptyDocuments(t *testing.T) {
	for name, in := range map[string]string{
		"nothing":         "",
		"separators only": "---\n---\n",
		"comments only":   "# nothing yet\n",
		"explicit null":   "null\n",
	} {
		t.Run(name, func(t *testing.T) {
			rs, err := DecodeAll([]byte(in))
			require.NoError(t, err)
			require.Empty(t, rs)
		})
	}
	in := "---\n" + doc("Service", "a", "{port: 80}") + "---\n---\n# a comment\n---\n" + doc("Service", "b", "{port: 80}") + "---\n"
	rs, err := DecodeAll([]byte(in))
	require.NoError(t, err)
	require.Len(t, rs, 2)
	require.Equal(t, "b", rs[1].GetMeta().Name)
}

func TestDecodeBadDocumentDoesNotHideGoodOnes(t *testing.T) {
	in := doc("Service", "a", "{port: 80}") + "---\n" +
		"apiVersion: bulwark/v2\nkind: Service\nmetadata: {name: b}\nspec: {Port: 80}\n---\n" +
		"kind: Gateway\n---\n" +
		"metadata: {name: d}\n---\n" +
		"- just a list\n---\n" +
		doc("Service", "f", "{port: 80}")
	rs, errs := decodeErrs(t, in)
	require.Len(t, rs, 2)
	require.Equal(t, "a", rs[0].GetMeta().Name)
	require.Equal(t, "f", rs[1].GetMeta().Name)
	require.Equal(t, DecodeErrors{
		{Index: 1, Kind: KindService, Name: "b", Violations: Violations{
			{Field: "spec.Port", Message: `unknown field (did you mean "port"?)`, Line: 9},
			{Field: "apiVersion", Message: `must be "bulwark/v1", got "bulwark/v2"`, Line: 6},
		}},
		{Index: 2, Kind: "Gateway", Violations: Violations{
			{Field: "kind", Message: `unknown kind "Gateway": use Service, ResiliencePolicy or ChaosExperiment`, Line: 11},
		}},
		{Index: 3, Name: "d", Violations: Violations{
			{Field: "kind", Message: "required: one of Service, ResiliencePolicy, ChaosExperiment", Line: 13},
		}},
		{Index: 4, Violations: Violations{
			{Message: "a resource must be a mapping with apiVersion, kind, metadata and spec", Line: 15},
		}},
	}, errs)
	require.Equal(t, `document 2 (Gateway): kind: unknown kind "Gateway": use Service, ResiliencePolicy or ChaosExperiment`, errs[1].Error())
	require.Equal(t, "document 4: a resource must be a mapping with apiVersion, kind, metadata and spec", errs[3].Error())
}

func TestDecodeScalarChecks(t *testing.T) {
	in := doc("ResiliencePolicy", "p", `
  target: {service: 42}
  timeouts: {request: 3 seconds, idle: ~}
  retries: {attempts: 99999999999, budget: {percent: .nan}}
  circuitBreaker: {successRate: {stdevFactor: "1.9"}}`)
	_, errs := decodeErrs(t, in)
	require.Equal(t, DecodeErrors{{Index: 0, Kind: KindPolicy, Name: "p", Violations: Violations{
		{Field: "spec.target.service", Message: `must be a string (got int; quote it: "42")`, Line: 5},
		{Field: "spec.timeouts.request", Message: `invalid duration "3 seconds": use a number with a unit, such as 250ms, 3s or 5m`, Line: 6},
		{Field: "spec.retries.attempts", Message: "integer out of range", Line: 7},
		{Field: "spec.retries.budget.percent", Message: "must be a finite number", Line: 7},
		{Field: "spec.circuitBreaker.successRate.stdevFactor", Message: "must be a number", Line: 8},
	}}}, errs)
}

func TestDecodeOneWantsExactlyOne(t *testing.T) {
	_, err := DecodeOne([]byte(doc("Service", "a", "{port: 80}") + "---\n" + doc("Service", "b", "{port: 80}")))
	require.EqualError(t, err, "document 0: expected one resource, found 2")
	_, err = DecodeOne(nil)
	require.EqualError(t, err, "document 0: expected one resource, found 0")
}

func TestDecodeStoredAdmitsStatus(t *testing.T) {
	in := doc("ChaosExperiment", "e", "{target: {service: payments}, abort: {percent: 10, httpStatus: 503}, duration: 10m}") +
		"status: {startedAt: \"2026-01-01T00:00:00Z\", endsAt: \"2026-01-01T00:10:00Z\", startedBy: alice, outcome: running}\n"

	_, errs := decodeErrs(t, in)
	require.Equal(t, DecodeErrors{{Index: 0, Kind: KindExperiment, Name: "e", Violations: Violations{
		{Field: "status", Message: "unknown field", Line: 5},
	}}}, errs)

	r, err := DecodeStored([]byte(in))
	require.NoError(t, err)
	require.Equal(t, &ExperimentStatus{StartedAt: "2026-01-01T00:00:00Z", EndsAt: "2026-01-01T00:10:00Z", StartedBy: "alice", Outcome: "running"},
		r.(*ChaosExperiment).Status)

	// DecodeStored is as strict as DecodeAll about everything else.
	_, err = DecodeStored([]byte(strings.Replace(in, "outcome", "result", 1)))
	require.EqualError(t, err, "document 0 (ChaosExperiment e): status.result: unknown field")
	_, err = DecodeStored([]byte("{"))
	require.ErrorContains(t, err, "malformed value")
	_, err = DecodeStored([]byte(""))
	require.EqualError(t, err, "empty value")
}

// A resource survives the store's JSON round trip unchanged.
func TestStoredJSONRoundTrip(t *testing.T) {
	in := doc("ResiliencePolicy", "payments", `
  target: {service: payments, route: {pathPrefix: /charge}}
  sources: [checkout]
  timeouts: {request: 1500ms, idle: 5m}
  retries: {attempts: 0, perTryTimeout: 1h30m, on: [5xx], statusCodes: [503], methods: [GET], backoff: {base: 25ms, max: 250ms}}`)
	orig := decodeOne(t, in)
	b, err := json.Marshal(orig)
	require.NoError(t, err)
	require.Contains(t, string(b), `"perTryTimeout":"90m"`)
	require.Contains(t, string(b), `"attempts":0`)
	back, err := DecodeStored(b)
	require.NoError(t, err)
	require.Equal(t, orig, back)
}

// "dependencies: []" (calls nothing) differs from no dependencies (calls
// everything) and must survive the store's JSON.
func TestStoredJSONKeepsEmptyDependencies(t *testing.T) {
	for _, deps := range []string{"", ", dependencies: []", ", dependencies: [ledger]"} {
		orig := decodeOne(t, doc("Service", "payments", "{port: 80"+deps+"}")).(*Service)
		b, err := json.Marshal(orig)
		require.NoError(t, err)
		back, err := DecodeStored(b)
		require.NoError(t, err)
		require.Equal(t, orig.Spec.Dependencies, back.(*Service).Spec.Dependencies, "%s: %s", deps, b)
	}
}
