package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/bulwarkmesh/bulwark/policies"
)

// ValueError reports a stored value that cannot be used; it is skipped.
type ValueError struct {
	Key string
	Err error
}

func (e *ValueError) Error() string { return fmt.Sprintf("bad value at %s: %v", e.Key, e.Err) }

// Unwrap returns the decoding error.
func (e *ValueError) Unwrap() error { return e.Err }

// encodeResource returns the JSON stored for r: apiVersion and kind filled,
// metadata.revision left out.
func encodeResource(r policies.Resource) ([]byte, error) {
	var v any
	switch t := r.(type) {
	case *policies.Service:
		c := *t
		c.APIVersion, c.Kind, c.Metadata.Revision = policies.APIVersion, policies.KindService, 0
		v = &c
	case *policies.ResiliencePolicy:
		c := *t
		c.APIVersion, c.Kind, c.Metadata.Revision = policies.APIVersion, policies.KindPolicy, 0
		v = &c
	case *policies.ChaosExperiment:
		c := *t
		c.APIVersion, c.Kind, c.Metadata.Revision = policies.APIVersion, policies.KindExperiment, 0
		v = &c
	case nil:
		return nil, errors.New("no resource")
	default:
		return nil, fmt.Errorf("unsupported resource type %T", r)
	}
	return json.Marshal(v)
}

// decodeResource decodes a stored value strictly and checks that it matches
// its key; metadata.revision becomes mod.
func (s *Store) decodeResource(key, value []byte, mod int64) (policies.Resource, error) {
	ref, ok := s.parseKey(string(key))
	if !ok || ref.kind == KindEndpoint {
		return nil, &ValueError{Key: string(key), Err: errors.New("not a resource key")}
	}
	r, err := policies.DecodeStored(value)
	if err != nil {
		return nil, &ValueError{Key: string(key), Err: err}
	}
	if r.GetKind() != ref.kind {
		return nil, &ValueError{Key: string(key), Err: fmt.Errorf("kind: %q stored under the %s key", r.GetKind(), ref.kind)}
	}
	if n := r.GetMeta().Name; n != ref.name {
		return nil, &ValueError{Key: string(key), Err: fmt.Errorf("metadata.name: %q stored under the key of %q", n, ref.name)}
	}
	r.GetMeta().Revision = mod
	return r, nil
}

// decodeEndpoint decodes a registered endpoint strictly (unknown fields are
// errors); the instance comes from the key.
func decodeEndpoint(key string, ref keyRef, value []byte) (policies.Endpoint, error) {
	var ep policies.Endpoint
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ep); err != nil {
		return ep, &ValueError{Key: key, Err: fmt.Errorf("malformed endpoint: %w", err)}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ep, &ValueError{Key: key, Err: errors.New("malformed endpoint: trailing data after the JSON object")}
	}
	if err := checkEndpoint(ep); err != nil {
		return ep, &ValueError{Key: key, Err: err}
	}
	if ep.Instance != "" && ep.Instance != ref.instance {
		return ep, &ValueError{Key: key, Err: fmt.Errorf("instance: %q stored under the key of %q", ep.Instance, ref.instance)}
	}
	ep.Instance = ref.instance
	return ep, nil
}

func checkEndpoint(ep policies.Endpoint) error {
	var vs policies.Violations
	if ep.Address == "" {
		vs = append(vs, policies.Violation{Field: "address", Message: "required"})
	}
	if ep.Port < 1 || ep.Port > 65535 {
		vs = append(vs, policies.Violation{Field: "port", Message: fmt.Sprintf("must be 1-65535, got %d", ep.Port)})
	}
	if ep.Weight < 0 {
		vs = append(vs, policies.Violation{Field: "weight", Message: "must not be negative"})
	}
	if len(vs) > 0 {
		return vs
	}
	return nil
}
