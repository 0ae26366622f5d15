// Package envoymodel is a behaviour model of Envoy's ADS client, for testing a control
// plane without an Envoy binary. An [Envoy] dials an ADS server over gRPC, opens one
// stream (state of the world or delta), subscribes the way Envoy does, validates and
// ACKs or NACKs every response, and tracks cluster and listener warming, so a test can
// see what a real proxy would serve and when.
//
// Each behaviour is modelled from a specific part of Envoy's source:
//
//   - Request/ACK/NACK framing, the node sent only on the first request of a SotW stream
//     (set_node_on_first_message_only defaults to true), per-type pause/resume, the
//     "request elided while paused" flag, nonce clearing and re-sending every
//     subscription on reconnect, and the handling of a response for a type with no
//     watches: source/extensions/config_subscription/grpc/grpc_mux_impl.cc and
//     grpc_mux_impl.h (GrpcMuxWatchImpl queues a request when a watch goes away).
//   - Delta: legacy wildcard first requests for CDS/LDS, resource_names_subscribe and
//     _unsubscribe diffs, initial_resource_versions on a fresh stream, the node on every
//     request, ACKs queued per type and held while the type is paused:
//     new_grpc_mux_impl.cc and delta_subscription_state.cc in the same directory.
//   - Validation before anything is applied (a failure rejects the whole response and
//     keeps the last accepted state): source/common/config/opaque_resource_decoder_impl.h
//     (anyConvertAndValidate) and grpc_mux_impl.cc onDiscoveryResponse.
//   - CDS pausing EDS while it is processed, then one EDS request carrying the same names
//     and the last accepted version when a cluster was added, changed or removed:
//     source/common/upstream/cds_api_helper.cc.
//   - Cluster warming: a changed cluster (by proto equality, Envoy uses a hash) replaces
//     the warming one or, if none, the active one; an EDS cluster stays warming until an
//     EDS update for its service name reaches its own, new subscription; non-EDS clusters
//     (STATIC, STRICT_DNS, LOGICAL_DNS, ORIGINAL_DST and cluster_type extensions such as
//     envoy.clusters.aggregate, whose pre-init completes at once) are active at once; CDS
//     is paused, so its ACK is held back, while any cluster warms after initialization:
//     source/common/upstream/cluster_manager_impl.cc (addOrUpdateCluster,
//     updateClusterCounts) and source/extensions/clusters/eds/eds.cc.
//   - initial_fetch_timeout (ConfigSource, default 15 s, 0 disables): a warming cluster
//     whose EDS does not arrive in time becomes active with no endpoints (eds.cc
//     onConfigUpdateFailed; with the use_eds_cache_for_ads runtime feature the last
//     assignment is reused instead, see [Options].UseEDSCacheOnTimeout).
//   - Start-up order: LDS is only requested once CDS has been received and its clusters
//     have warmed (cluster manager init, then the server init manager starts LDS).
//   - Listener warming: LDS pauses RDS while it is processed; RDS subscriptions are
//     shared by route_config_name, so a new or changed listener waits only for route
//     configurations that have not yet arrived (or timed out) for that name:
//     source/common/listener_manager/lds_api.cc, listener_manager_impl.cc,
//     source/common/rds/route_config_provider_manager.cc (reuseDynamicProvider) and
//     rds_route_config_subscription.h (SharedTargetImpl init target).
//
// The model does not simulate traffic, health checking, SDS, ECDS, VHDS, LEDS, TTLs or
// xdstp:// names, and does not reconnect by itself: a broken stream is reported by
// [Envoy.Err] and a test calls [Envoy.Reconnect]. Every EDS and RDS config source is
// assumed to be ADS. A rejected response (a validation failure, a duplicate name or the
// test's [Options].Reject) rejects everything in it, as a proto validation failure does
// in Envoy; Envoy's cluster and listener managers, for errors found only while building
// the object, apply the other resources of the response and still NACK it, which the
// model does not reproduce.
//
// An instance costs one goroutine for its stream (plus a short-lived one when a timeout
// fires) and its own bookkeeping, so a fleet simulator can run thousands. Decoding and
// validating a resource is shared by every instance in the process: the server sends
// the same bytes to every proxy of a group, and the model caches the outcome by the
// resource's type URL and encoded bytes, so all instances that accepted those bytes
// hold one decoded message. Shared messages (those [Envoy.Config] returns and those a
// Reject predicate sees) are immutable and must not be modified. The predicate itself
// runs for each instance on every resource, cached or not. The cache holds messages
// weakly and drops an entry once no instance references its message.
package envoymodel
