// Package xds holds Bulwark's pure middle: resolve (policies → IR, in
// xds/resolve), the IR (xds/ir) and translate (IR → Envoy and proxyless
// gRPC resources, in xds/translate). This package ties them together for
// the CLI and the API. Nothing here does I/O.
package xds

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/xds/internal/protoyaml"
	"github.com/bulwarkmesh/bulwark/xds/ir"
	"github.com/bulwarkmesh/bulwark/xds/resolve"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

// Render builds the exact resources a proxy group (flavor, source) receives:
// resolve with the default options, translate, then Check. The errors name
// what was left out (a service, a fallback, an experiment) while the rest
// was still rendered. Resources come back nil when the group itself is
// invalid or the result fails Check: nothing unfit to publish leaves Render.
func Render(set *policies.Set, flavor ir.Flavor, source string) (*translate.Resources, []error) {
	x, errs := resolve.Resolve(set, flavor, source, resolve.Options{})
	if x == nil {
		return nil, errs
	}
	r, err := translate.Translate(x)
	if err != nil {
		errs = append(errs, err)
	}
	if r == nil {
		return nil, errs
	}
	if err := translate.Check(r); err != nil {
		return nil, append(errs, fmt.Errorf("check: %w", err))
	}
	return r, errs
}

// MarshalJSON renders resources as one JSON document with the lists
// "listeners", "routes", "clusters" and "endpoints", each resource in its
// protojson form with proto field names. The bytes are stable.
func MarshalJSON(r *translate.Resources) ([]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("nil resources")
	}
	var doc struct {
		Listeners json.RawMessage `json:"listeners"`
		Routes    json.RawMessage `json:"routes"`
		Clusters  json.RawMessage `json:"clusters"`
		Endpoints json.RawMessage `json:"endpoints"`
	}
	var err error
	if doc.Listeners, err = protoyaml.JSONList(r.Listeners); err != nil {
		return nil, fmt.Errorf("listeners: %w", err)
	}
	if doc.Routes, err = protoyaml.JSONList(r.Routes); err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	if doc.Clusters, err = protoyaml.JSONList(r.Clusters); err != nil {
		return nil, fmt.Errorf("clusters: %w", err)
	}
	if doc.Endpoints, err = protoyaml.JSONList(r.Endpoints); err != nil {
		return nil, fmt.Errorf("endpoints: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// MarshalYAML renders the document of MarshalJSON as block-style YAML, in
// proto field order.
func MarshalYAML(r *translate.Resources) ([]byte, error) {
	js, err := MarshalJSON(r)
	if err != nil {
		return nil, err
	}
	n, err := protoyaml.Node(js)
	if err != nil {
		return nil, err
	}
	return protoyaml.Marshal(n)
}
