package adminapi

import (
	_ "embed"
	"net/http"
)

// OpenAPI is the OpenAPI 3 description of the admin API, served at
// /v1/openapi.json; docs/openapi.json is a copy that a test keeps equal.
//
//go:embed openapi.json
var OpenAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(OpenAPI)
}
