package ir

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"
)

// Decode reads an IR written in YAML (or JSON), strictly: unknown fields are
// errors. It does not validate; call Validate.
func Decode(data []byte) (*Xds, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var x Xds
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("decode IR: %w", err)
	}
	return &x, nil
}
