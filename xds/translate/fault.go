package translate

import (
	"math"
	"slices"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bulwarkmesh/bulwark/xds/ir"
)

// faultFilter is the fault filter of every HTTP connection manager, empty:
// it injects nothing until a route's typed_per_filter_config says so. It is
// always there so that starting or stopping an experiment changes routes
// only, never the listener (a listener change drains connections).
func faultFilter() (*hcmv3.HttpFilter, error) {
	cfg, err := toAny(&faultv3.HTTPFault{})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: wellknown.Fault, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg}}, nil
}

// faultConfig maps a chaos experiment to the fault filter's per-route
// configuration. Percentages become parts per million.
func faultConfig(f *ir.Fault) (map[string]*anypb.Any, error) {
	if f == nil {
		return nil, nil
	}
	hf := &faultv3.HTTPFault{Headers: faultHeaders(f)}
	if a := f.Abort; a != nil {
		abort := &faultv3.FaultAbort{Percentage: perMillion(a.Percent)}
		if a.GRPCStatus != nil {
			abort.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: uint32(*a.GRPCStatus)}
		} else {
			abort.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(a.HTTPStatus)}
		}
		hf.Abort = abort
	}
	if d := f.Delay; d != nil {
		hf.Delay = &commonfaultv3.FaultDelay{
			FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: dur(d.Fixed)},
			Percentage:         perMillion(d.Percent),
		}
	}
	cfg, err := toAny(hf)
	if err != nil {
		return nil, err
	}
	return map[string]*anypb.Any{wellknown.Fault: cfg}, nil
}

// faultHeaders are exact matchers for the experiment's headers, sorted by
// name. Header names are matched lower-case (HTTP/2 and gRPC metadata keys
// are lower-case).
func faultHeaders(f *ir.Fault) []*routev3.HeaderMatcher {
	if len(f.Headers) == 0 {
		return nil
	}
	names := make([]string, 0, len(f.Headers))
	for k := range f.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make([]*routev3.HeaderMatcher, 0, len(names))
	for _, k := range names {
		out = append(out, exactHeader(strings.ToLower(k), f.Headers[k]))
	}
	return out
}

// routeHeaders are the experiment's headers as the route matchers of a
// proxyless gRPC route, sorted by name, in the one form every gRPC xDS
// client accepts: the HeaderMatcher's own exact_match. gRPC C-core 1.51
// NACKs a route whose header matcher is a string_match ("Invalid route
// header matcher specified"); gRPC-Go and grpc-js accept both forms.
func routeHeaders(f *ir.Fault) []*routev3.HeaderMatcher {
	if len(f.Headers) == 0 {
		return nil
	}
	names := make([]string, 0, len(f.Headers))
	for k := range f.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	out := make([]*routev3.HeaderMatcher, 0, len(names))
	for _, k := range names {
		out = append(out, &routev3.HeaderMatcher{
			Name: strings.ToLower(k),
			// Deprecated in Envoy's API, and the form C-core 1.51 needs.
			HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: f.Headers[k]}, //lint:ignore SA1019 gRPC C-core 1.51 NACKs string_match
		})
	}
	return out
}

func perMillion(percent float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{
		Numerator:   uint32(math.Round(percent * 10000)),
		Denominator: typev3.FractionalPercent_MILLION,
	}
}
