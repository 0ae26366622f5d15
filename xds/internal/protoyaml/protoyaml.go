// Package protoyaml renders xDS resources as YAML a reviewer can read: the
// protojson form (proto field names, well-known types as strings), re-encoded
// in block style with the proto's field order kept.
package protoyaml

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"
)

var jsonOpts = protojson.MarshalOptions{UseProtoNames: true}

// JSON renders a message as compact protojson with proto field names.
// protojson's spacing varies on purpose; compacting makes it stable.
func JSON(m proto.Message) ([]byte, error) {
	b, err := jsonOpts.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// JSONList renders messages as a JSON array.
func JSONList[T proto.Message](ms []T) (json.RawMessage, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, m := range ms {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, err := JSON(m)
		if err != nil {
			return nil, err
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

// Node converts JSON to a block-style YAML node, keeping key order.
func Node(js []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("re-encode as YAML: %w", err)
	}
	if len(doc.Content) != 1 {
		return nil, fmt.Errorf("re-encode as YAML: expected one document")
	}
	restyle(doc.Content[0])
	return doc.Content[0], nil
}

// restyle drops the flow style and quotes JSON parsing leaves on the nodes;
// the encoder quotes again whatever YAML 1.2 needs, and the words YAML 1.1
// tools read as booleans ("on", "yes", …) are quoted too.
func restyle(n *yaml.Node) {
	n.Style = 0
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && yaml11Bools[strings.ToLower(n.Value)] {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		restyle(c)
	}
}

var yaml11Bools = map[string]bool{"y": true, "yes": true, "n": true, "no": true, "on": true, "off": true, "true": true, "false": true}

// Marshal encodes a YAML node with two-space indentation.
func Marshal(n *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// List renders messages as a YAML list.
func List[T proto.Message](ms []T) ([]byte, error) {
	js, err := JSONList(ms)
	if err != nil {
		return nil, err
	}
	n, err := Node(js)
	if err != nil {
		return nil, err
	}
	return Marshal(n)
}
