package envoymodel

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// item is one decoded, validated resource of a response.
type item struct {
	name, version string
	msg           proto.Message
	rds           []rdsRef // listeners: the RDS names of their HTTP connection managers
}

type rdsRef struct {
	name   string
	source *corev3.ConfigSource
}

var hcmTypeURL = "type.googleapis.com/" + string((&hcmv3.HttpConnectionManager{}).ProtoReflect().Descriptor().FullName())

func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case *clusterv3.Cluster:
		return r.GetName()
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	case *listenerv3.Listener:
		return r.GetName()
	case *routev3.RouteConfiguration:
		return r.GetName()
	}
	return ""
}

type validator interface{ ValidateAll() error }

// decode unpacks one resource and validates it as Envoy's OpaqueResourceDecoderImpl
// does (anyConvertAndValidate), then asks the test's rejection predicate. Unpacking and
// validation are shared by every instance through the process-wide cache (see
// sharedDecode); the predicate runs for this instance on every resource.
func (e *Envoy) decode(typeURL, name, version string, a *anypb.Any) (item, error) {
	if a.GetTypeUrl() != typeURL {
		return item{}, fmt.Errorf("%s does not match the message-wide type URL %s", a.GetTypeUrl(), typeURL)
	}
	d, msg := sharedDecode(typeURL, a.GetValue())
	switch d.stage {
	case stageUnsupported:
		return item{}, fmt.Errorf("unsupported type URL %s", typeURL)
	case stageUnpack:
		return item{}, fmt.Errorf("unable to unpack as %s: %w", typeURL, d.err)
	}
	switch {
	case name == "":
		name = d.name
	case name == d.name:
		name = d.name // the shared copy of the string, not this response's
	default:
		name = intern(name)
	}
	switch d.stage {
	case stageValidate:
		return item{}, fmt.Errorf("%s: proto constraint validation failed: %w", name, d.err)
	case stageListener:
		return item{}, fmt.Errorf("%s: %w", name, d.err)
	}
	it := item{name: name, version: intern(version), msg: msg, rds: d.rds}
	if e.opts.Reject != nil {
		if err := e.opts.Reject(typeURL, name, msg); err != nil {
			return item{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	return it, nil
}

// listenerRDS validates the listener's HTTP connection managers (their filter factory
// does so in Envoy) and returns the route configurations they fetch over RDS.
func listenerRDS(l *listenerv3.Listener) ([]rdsRef, error) {
	var refs []rdsRef
	chains := l.GetFilterChains()
	if l.GetDefaultFilterChain() != nil {
		chains = append(chains[:len(chains):len(chains)], l.GetDefaultFilterChain())
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			if tc.GetTypeUrl() != hcmTypeURL {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := tc.UnmarshalTo(hcm); err != nil {
				return nil, fmt.Errorf("unable to unpack HttpConnectionManager: %w", err)
			}
			if err := hcm.ValidateAll(); err != nil {
				return nil, fmt.Errorf("HttpConnectionManager: %w", err)
			}
			if rds := hcm.GetRds(); rds != nil {
				refs = append(refs, rdsRef{name: rds.GetRouteConfigName(), source: rds.GetConfigSource()})
			}
		}
	}
	return refs, nil
}

func (e *Envoy) decodeSotw(resp *discoverygrpc.DiscoveryResponse) ([]item, error) {
	items := make([]item, 0, len(resp.Resources))
	seen := make(map[string]struct{}, len(resp.Resources))
	for _, a := range resp.Resources {
		it, err := e.decode(resp.TypeUrl, "", resp.VersionInfo, a)
		if err != nil {
			return nil, err
		}
		if _, dup := seen[it.name]; dup {
			return nil, fmt.Errorf("duplicate resource %s found", it.name)
		}
		seen[it.name] = struct{}{}
		items = append(items, it)
	}
	return items, nil
}

func (e *Envoy) decodeDelta(t *apiState, resp *discoverygrpc.DeltaDiscoveryResponse) ([]item, error) {
	items := make([]item, 0, len(resp.Resources))
	seen := make(map[string]struct{}, len(resp.Resources)+len(resp.RemovedResources))
	for _, r := range resp.Resources {
		if _, dup := seen[r.Name]; dup {
			return nil, fmt.Errorf("duplicate name %s found among added/updated resources", r.Name)
		}
		seen[r.Name] = struct{}{}
		if r.Resource == nil {
			if v, ok := t.versions[r.Name]; ok && v == r.Version {
				continue // heartbeat
			}
			if len(r.Aliases) > 0 {
				continue // unresolved alias
			}
		}
		it, err := e.decode(resp.TypeUrl, r.Name, r.Version, r.Resource)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	for _, n := range resp.RemovedResources {
		if _, dup := seen[n]; dup {
			return nil, fmt.Errorf("duplicate name %s found in the union of added+removed resources", n)
		}
		seen[n] = struct{}{}
	}
	return items, nil
}
