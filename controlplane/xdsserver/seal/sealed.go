// Package seal encodes xDS resources once: a sealed resource carries its
// deterministic encoding, computed when the snapshot is built, so that a
// push to thousands of streams encodes nothing again; snapshots get content
// versions from those encodings (per type for state of the world, per
// resource for delta), with the endpoint versions covering their clusters
// for Envoy's warming.
//
// It imports only go-control-plane and xds/translate; every other package
// of the control plane may import it.
package seal

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/runtime/protoiface"
)

// sealedResource is a snapshot resource that carries its deterministic
// encoding, computed once when the snapshot is built (the content hash
// needs it anyway).
//
// go-control-plane's cache encodes every resource of every response it
// creates, once per stream: a change pushed to 10,000 proxies of a group
// would encode the same route configuration 10,000 times. Marshalling a
// sealed resource returns the bytes it holds instead, so a push costs one
// encoding per resource and version, not one per stream.
//
// The encoding is returned without a copy to callers that marshal into a
// fresh buffer (go-control-plane's MarshalResource does): the bytes are
// shared and must never be written to, so never MarshalAppend into a buffer
// that held a sealed encoding. Everything else (reflection, JSON, Size)
// sees the wrapped message.
type sealedResource struct {
	proto.Message
	name string
	raw  []byte
	// version is the content hash of raw, the resource's version in delta.
	version string
}

// seal wraps m, named name, with raw, its deterministic encoding.
func seal(m proto.Message, name string, raw []byte) *sealedResource {
	h := sha256.Sum256(raw)
	return &sealedResource{Message: m, name: name, raw: raw[:len(raw):len(raw)], version: hex.EncodeToString(h[:])[:16]}
}

// GetName names the resource for the cache (types.ResourceWithName); for an
// endpoint assignment it is the cluster name.
func (s *sealedResource) GetName() string { return s.name }

// ProtoReflect is the wrapped message's reflection with the sealed fast path.
func (s *sealedResource) ProtoReflect() protoreflect.Message {
	return sealedReflect{Message: s.Message.ProtoReflect(), raw: s.raw}
}

// sealedReflect answers Marshal with the sealed bytes.
type sealedReflect struct {
	protoreflect.Message
	raw []byte
}

// ProtoMethods implements protoreflect.Message.
func (sealedReflect) ProtoMethods() *protoiface.Methods { return &sealedMethods }

var sealedMethods = protoiface.Methods{
	Flags:   protoiface.SupportMarshalDeterministic,
	Marshal: marshalSealed,
	CheckInitialized: func(protoiface.CheckInitializedInput) (protoiface.CheckInitializedOutput, error) {
		return protoiface.CheckInitializedOutput{}, nil
	},
}

func marshalSealed(in protoiface.MarshalInput) (protoiface.MarshalOutput, error) {
	raw := in.Message.(sealedReflect).raw
	if cap(in.Buf) == 0 {
		return protoiface.MarshalOutput{Buf: raw}, nil
	}
	return protoiface.MarshalOutput{Buf: append(in.Buf, raw...)}, nil
}

// Sealer remembers sealed resources by the identity of the translated
// object. The translation cache hands every group and every build the same
// objects for a service that did not change, so each is encoded once, not
// once per group and build. Entries that no build used since the previous
// sweep are dropped. Objects must not change once sealed (translated
// resources never do).
type Sealer struct {
	mu   sync.Mutex
	memo map[proto.Message]*sealEntry
	gen  uint64
}

type sealEntry struct {
	sealed *sealedResource
	used   uint64
}

// NewSealer returns an empty Sealer.
func NewSealer() *Sealer { return &Sealer{memo: map[proto.Message]*sealEntry{}} }

// seal returns m sealed, encoding it unless it was sealed before. A nil
// Sealer always encodes.
func (z *Sealer) seal(m proto.Message, name string) (*sealedResource, error) {
	if z != nil {
		z.mu.Lock()
		e := z.memo[m]
		if e != nil {
			e.used = z.gen
		}
		z.mu.Unlock()
		if e != nil {
			return e.sealed, nil
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, err
	}
	s := seal(m, name, b)
	if z != nil {
		z.mu.Lock()
		z.memo[m] = &sealEntry{sealed: s, used: z.gen}
		z.mu.Unlock()
	}
	return s, nil
}

// Sweep drops what no build used since the previous sweep.
func (z *Sealer) Sweep() {
	z.mu.Lock()
	defer z.mu.Unlock()
	for m, e := range z.memo {
		if e.used != z.gen {
			delete(z.memo, m)
		}
	}
	z.gen++
}
