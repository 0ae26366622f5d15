package adminapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
)

// FuzzDecodeAll feeds arbitrary bytes to the strict decoder. It must never
// panic; every error is a DecodeErrors whose documents carry at least one
// violation; every resource it returns has a known kind, and encoding it as
// JSON and decoding it again gives the same resource.
func FuzzDecodeAll(f *testing.F) {
	for _, b := range examples(f) {
		f.Add(b)
	}
	for _, s := range []string{"", "---\n---\n", "{\"items\": []}", "kind: List\nitems: [1]\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := policies.DecodeAll(data)
		if err != nil {
			var des policies.DecodeErrors
			if !errors.As(err, &des) || len(des) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty DecodeErrors", err, err)
			}
			for _, de := range des {
				if len(de.Violations) == 0 {
					t.Fatalf("document %d fails without a violation", de.Index)
				}
			}
		}
		for _, r := range rs {
			switch r.(type) {
			case *policies.Service, *policies.ResiliencePolicy, *policies.ChaosExperiment:
			default:
				t.Fatalf("unexpected resource %T", r)
			}
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatalf("encode %s %s: %v", r.GetKind(), r.GetMeta().Name, err)
			}
			again, err := policies.DecodeOne(b)
			if err != nil {
				t.Fatalf("a decoded resource does not decode again from its JSON %s: %v", b, err)
			}
			if !reflect.DeepEqual(r, again) {
				t.Fatalf("round trip changed the resource:\n%#v\n%#v", r, again)
			}
		}
	})
}

// FuzzParseBundle feeds arbitrary content types and bodies to the parser of
// POST /v1/apply. It must never panic, and must answer either resources or a
// 400 or 415 problem whose violations all say something.
func FuzzParseBundle(f *testing.F) {
	for _, b := range examples(f) {
		f.Add("application/yaml", b)
	}
	f.Add("application/json", []byte(`{"items": [{"apiVersion": "bulwark/v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"port": 1}}]}`))
	f.Add("application/json", []byte(`{"kind": `))
	f.Add("text/plain", []byte("x"))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		rs, err := ParseBundle(contentType, body)
		if err == nil {
			if len(rs) == 0 {
				t.Fatal("no error and no resource")
			}
			for _, r := range rs {
				if r == nil || r.GetMeta() == nil {
					t.Fatal("a nil resource")
				}
			}
			return
		}
		var p *api.Problem
		if !errors.As(err, &p) {
			t.Fatalf("error %v (%T) is not a *api.Problem", err, err)
		}
		if p.Status != http.StatusBadRequest && p.Status != http.StatusUnsupportedMediaType {
			t.Fatalf("status %d for bad input", p.Status)
		}
		if p.Detail == "" {
			t.Fatal("a problem without detail")
		}
		for _, v := range p.Violations {
			if v.Message == "" {
				t.Fatalf("a violation of %q without a message", v.Field)
			}
		}
	})
}

// examples returns the files of the example mesh, the seeds of the fuzzers.
func examples(f *testing.F) [][]byte {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "..", "examples", "policies", "*.yaml"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no example policies to seed with: %v", err)
	}
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
