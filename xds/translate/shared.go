package translate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Resources leave this package read-only (see ServiceResources), so the
// small constant messages every resource needs are allocated once and
// shared: a config source, small integers. At 10,000 services this removes
// a large share of translation's allocations. Marshalling shared messages
// concurrently is safe (protobuf caches sizes atomically).

// maxSharedU32 bounds the integers kept as shared wrappers.
const maxSharedU32 = 1024

var sharedU32 = func() (out [maxSharedU32 + 1]*wrapperspb.UInt32Value) {
	for i := range out {
		out[i] = wrapperspb.UInt32(uint32(i))
	}
	return out
}()

// u32 wraps a non-negative int (validated by the IR).
func u32(v int) *wrapperspb.UInt32Value { return u32v(uint32(v)) }

func u32v(v uint32) *wrapperspb.UInt32Value {
	if v <= maxSharedU32 {
		return sharedU32[v]
	}
	return wrapperspb.UInt32(v)
}

// ads says "over the ADS stream, xDS v3".
var ads = &corev3.ConfigSource{
	ResourceApiVersion:    corev3.ApiVersion_V3,
	ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
}
