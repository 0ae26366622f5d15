package envoymodel

import (
	"runtime"
	"sync"
	"unique"
	"weak"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
)

// The server sends the same bytes to every proxy of a group, so the model decodes and
// validates each distinct resource once per process, not once per instance: the
// decoded message (and the error, if it failed) is cached by its type URL and the
// Any's value bytes, and every instance that receives those bytes keeps a pointer to
// the same message. Shared messages are immutable: nothing in the model, in a Reject
// predicate or in a caller of Config may modify them.
//
// The cache holds accepted messages weakly. An entry lives as long as some instance
// (or caller) still references its message and is dropped by a cleanup once the
// garbage collector has reclaimed it, so a long run with churning configuration keeps
// only what the instances hold. Entries that failed (no instance keeps their message)
// are held strongly, at most maxFailed of them.

// decodeStage says how far decoding got; stageOK means decoded and validated.
type decodeStage uint8

const (
	stageOK          decodeStage = iota
	stageUnsupported             // not a type the model decodes
	stageUnpack                  // the bytes do not unmarshal as the type
	stageValidate                // ValidateAll failed
	stageListener                // a listener's HttpConnectionManager is invalid
)

// decoded is the instance-independent outcome of decoding one resource.
type decoded struct {
	stage decodeStage
	err   error
	name  string   // resourceName of the message
	rds   []rdsRef // listeners: the RDS names of their HTTP connection managers
	msg   func() proto.Message
}

const maxFailed = 1024

var shared = struct {
	mu     sync.Mutex
	ok     map[string]map[string]*decoded // type URL, value bytes
	failed map[string]map[string]*decoded
	nFail  int
}{ok: map[string]map[string]*decoded{}, failed: map[string]map[string]*decoded{}}

// sharedDecode returns the decoding of value as typeURL and, for stageOK, the shared
// message, decoding and validating it only if no live message has those bytes.
func sharedDecode(typeURL string, value []byte) (*decoded, proto.Message) {
	shared.mu.Lock()
	if d := shared.failed[typeURL][string(value)]; d != nil {
		shared.mu.Unlock()
		return d, nil
	}
	if d := shared.ok[typeURL][string(value)]; d != nil {
		if m := d.msg(); m != nil {
			shared.mu.Unlock()
			return d, m
		}
	}
	shared.mu.Unlock()

	// Decode outside the lock; two instances racing on new bytes may both decode,
	// and the later one adopts the first's message.
	d, m := decodeResource(typeURL, value)
	key := string(value)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if d.stage != stageOK {
		if shared.nFail >= maxFailed {
			clear(shared.failed)
			shared.nFail = 0
		}
		byKey := shared.failed[typeURL]
		if byKey == nil {
			byKey = map[string]*decoded{}
			shared.failed[typeURL] = byKey
		}
		if prev := byKey[key]; prev != nil {
			return prev, nil
		}
		byKey[key] = d
		shared.nFail++
		return d, nil
	}
	byKey := shared.ok[typeURL]
	if byKey == nil {
		byKey = map[string]*decoded{}
		shared.ok[typeURL] = byKey
	}
	if prev := byKey[key]; prev != nil {
		if pm := prev.msg(); pm != nil {
			return prev, pm
		}
	}
	byKey[key] = d
	k := sharedKey{typeURL, key}
	switch t := m.(type) {
	case *clusterv3.Cluster:
		runtime.AddCleanup(t, dropShared, k)
	case *endpointv3.ClusterLoadAssignment:
		runtime.AddCleanup(t, dropShared, k)
	case *listenerv3.Listener:
		runtime.AddCleanup(t, dropShared, k)
	case *routev3.RouteConfiguration:
		runtime.AddCleanup(t, dropShared, k)
	}
	return d, m
}

type sharedKey struct{ typeURL, value string }

// dropShared runs once the garbage collector reclaimed a shared message: its entry
// goes, unless the bytes have been decoded again since.
func dropShared(k sharedKey) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	byKey := shared.ok[k.typeURL]
	if d := byKey[k.value]; d != nil && d.msg() == nil {
		delete(byKey, k.value)
	}
}

// sharedEntries returns the number of cached entries (live and failed), for tests.
func sharedEntries() (ok, failed int) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	for _, m := range shared.ok {
		ok += len(m)
	}
	for _, m := range shared.failed {
		failed += len(m)
	}
	return ok, failed
}

// decodeResource unpacks and validates one resource, without the cache.
func decodeResource(typeURL string, value []byte) (*decoded, proto.Message) {
	d := &decoded{}
	var msg proto.Message
	switch typeURL {
	case typeCluster:
		m := &clusterv3.Cluster{}
		msg, d.msg = m, weakly(m)
	case typeEndpoint:
		m := &endpointv3.ClusterLoadAssignment{}
		msg, d.msg = m, weakly(m)
	case typeListener:
		m := &listenerv3.Listener{}
		msg, d.msg = m, weakly(m)
	case typeRoute:
		m := &routev3.RouteConfiguration{}
		msg, d.msg = m, weakly(m)
	default:
		d.stage = stageUnsupported
		return d, nil
	}
	if err := proto.Unmarshal(value, msg); err != nil {
		d.stage, d.err, d.msg = stageUnpack, err, nil
		return d, nil
	}
	d.name = resourceName(msg)
	if err := msg.(validator).ValidateAll(); err != nil {
		d.stage, d.err, d.msg = stageValidate, err, nil
		return d, nil
	}
	if l, ok := msg.(*listenerv3.Listener); ok {
		refs, err := listenerRDS(l)
		if err != nil {
			d.stage, d.err, d.msg = stageListener, err, nil
			return d, nil
		}
		d.rds = refs
	}
	return d, msg
}

// weakly returns a function yielding m while it is still referenced, nil after.
func weakly[T any, P interface {
	*T
	proto.Message
}](m P) func() proto.Message {
	w := weak.Make((*T)(m))
	return func() proto.Message {
		if v := w.Value(); v != nil {
			return P(v)
		}
		return nil
	}
}

// intern returns the process-wide copy of s, so the names and versions thousands of
// instances keep from their responses are stored once.
func intern(s string) string { return unique.Make(s).Value() }

// sameMessage is proto.Equal, short-cut for the common case of one shared message.
func sameMessage[P proto.Message](a, b P) bool {
	return any(a) == any(b) || proto.Equal(a, b)
}
