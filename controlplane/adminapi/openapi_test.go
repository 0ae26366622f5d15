package adminapi

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var updateDocs = flag.Bool("update-docs", false, "copy controlplane/adminapi/openapi.json to docs/openapi.json")

var methods = []string{"get", "put", "post", "delete", "patch", "head", "options"}

// documented returns "METHOD /path" for every operation of the document.
func documented(t *testing.T, doc map[string]any) []string {
	t.Helper()
	paths, ok := doc["paths"].(map[string]any)
	require.True(t, ok, "paths")
	var out []string
	for p, item := range paths {
		ops := item.(map[string]any)
		for _, m := range methods {
			if _, ok := ops[m]; ok {
				out = append(out, strings.ToUpper(m)+" "+p)
			}
		}
	}
	sort.Strings(out)
	return out
}

// refs collects every "$ref" of a JSON value.
func refs(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "$ref" {
				*out = append(*out, s)
			}
			refs(e, out)
		}
	case []any:
		for _, e := range x {
			refs(e, out)
		}
	}
}

var pathParam = regexp.MustCompile(`\{[a-z]+\}`)

// The OpenAPI document describes exactly the routes the admin mux serves:
// every route is documented and every documented operation is routed. The
// document is served at /v1/openapi.json and kept in docs/.
func TestAPIOpenAPIMatchesRoutes(t *testing.T) {
	routes := New(Deps{}).routes()
	mux, _ := newAdminMux(routes, nil)
	var routed []string
	for _, rt := range routes {
		routed = append(routed, rt.pattern)
		// The mux answers a request of this shape with this very route.
		method, path, _ := strings.Cut(rt.pattern, " ")
		req := httptest.NewRequest(method, pathParam.ReplaceAllString(path, "sample"), nil)
		_, pattern := mux.Handler(req)
		require.Equal(t, rt.pattern, pattern)
	}
	sort.Strings(routed)

	var doc map[string]any
	require.NoError(t, json.Unmarshal(OpenAPI, &doc))
	require.Equal(t, "3.0.3", doc["openapi"])
	require.Equal(t, routed, documented(t, doc), "routes and documented operations differ")

	var rs []string
	refs(doc, &rs)
	require.NotEmpty(t, rs)
	for _, ref := range rs {
		require.True(t, strings.HasPrefix(ref, "#/"), ref)
		var cur any = doc
		for _, seg := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			m, ok := cur.(map[string]any)
			require.True(t, ok, "unresolved $ref %s", ref)
			cur, ok = m[seg]
			require.True(t, ok, "unresolved $ref %s", ref)
		}
	}
	// Open routes say so; every other one needs the bearer token.
	paths := doc["paths"].(map[string]any)
	for _, rt := range routes {
		method, path, _ := strings.Cut(rt.pattern, " ")
		op := paths[path].(map[string]any)[strings.ToLower(method)].(map[string]any)
		sec, hasSec := op["security"]
		if rt.role == RoleNone {
			require.True(t, hasSec && len(sec.([]any)) == 0, "%s is open and must say security: []", rt.pattern)
		} else {
			require.False(t, hasSec, "%s needs the document's default security", rt.pattern)
		}
	}

	docsCopy := filepath.Join("..", "..", "docs", "openapi.json")
	if *updateDocs {
		require.NoError(t, os.WriteFile(docsCopy, OpenAPI, 0o644))
	}
	kept, err := os.ReadFile(docsCopy)
	require.NoError(t, err)
	require.True(t, bytes.Equal(OpenAPI, kept), "docs/openapi.json is stale: run go test ./controlplane/adminapi -run OpenAPI -update-docs")
}
