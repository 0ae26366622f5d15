package kubernetes

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"sync"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3" // typed_extension_protocol_options
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// fileFlags are bulwark's flags that name a file it reads.
var fileFlags = []string{"token-file", "tls-cert", "tls-key", "xds-client-ca", "etcd-ca", "etcd-cert", "etcd-key"}

// checkBulwark: the args are flags the real binary accepts, the addresses
// match the container ports, the probes hit the admin port's real health
// routes, and every file it reads is mounted.
func (c *checker) checkBulwark(w workload, ct *corev1.Container) {
	args := make([]string, len(ct.Args))
	for i, a := range ct.Args {
		args[i] = expand(w, ct, a)
	}
	if len(ct.Command) > 0 {
		c.errorf("%s: container %s: command %v replaces the image's bulwark entrypoint", w, ct.Name, ct.Command)
	}
	// The real flag set: everything before -help must parse, or the binary
	// exits 2 with the reason.
	if msg := parseArgs(c.bulwrk, args); msg != "" {
		c.errorf("%s: container %s: bulwark rejects the args (%s)", w, ct.Name, msg)
	}
	f := c.flags(w, ct, args)
	addrPort := func(flag string) *corev1.ContainerPort {
		_, port, err := hostPort(f[flag])
		if err != nil {
			c.errorf("%s: container %s: --%s=%s: %v", w, ct.Name, flag, f[flag], err)
			return nil
		}
		p := containerPort(ct, intstr.FromInt32(port))
		if p == nil {
			c.errorf("%s: container %s: --%s port %d is no container port", w, ct.Name, flag, port)
		}
		return p
	}
	addrPort("xds-addr")
	admin := addrPort("admin-addr")
	tls := f["tls-cert"] != ""
	if tls != (f["tls-key"] != "") {
		c.errorf("%s: container %s: --tls-cert and --tls-key go together", w, ct.Name)
	}
	if f["token-file"] == "" {
		c.errorf("%s: container %s: the admin API listens beyond loopback without --token-file", w, ct.Name)
	}
	for _, name := range fileFlags {
		if p := f[name]; p != "" {
			c.file(w, ct, "--"+name, p)
		}
	}
	for kind, want := range map[string]struct {
		probe *corev1.Probe
		path  string
	}{"readinessProbe": {ct.ReadinessProbe, "/health/ready"}, "livenessProbe": {ct.LivenessProbe, "/health/live"}} {
		p := want.probe
		if p == nil || p.HTTPGet == nil {
			c.errorf("%s: container %s: no HTTP %s", w, ct.Name, kind)
			continue
		}
		if p.HTTPGet.Path != want.path {
			c.errorf("%s: container %s: %s path %s, want %s", w, ct.Name, kind, p.HTTPGet.Path, want.path)
		}
		if !strings.Contains(c.routes, `"GET `+p.HTTPGet.Path+`"`) {
			c.errorf("%s: container %s: %s path %s is no route of the admin API", w, ct.Name, kind, p.HTTPGet.Path)
		}
		if got := containerPort(ct, p.HTTPGet.Port); admin != nil && got != admin {
			c.errorf("%s: container %s: %s port %s is not the --admin-addr port %d", w, ct.Name, kind, p.HTTPGet.Port.String(), admin.ContainerPort)
		}
		if (p.HTTPGet.Scheme == corev1.URISchemeHTTPS) != tls {
			c.errorf("%s: container %s: %s scheme %q, but the admin port serves TLS: %v", w, ct.Name, kind, p.HTTPGet.Scheme, tls)
		}
	}
	c.checkEtcdEndpoints(w, ct, f["etcd-endpoints"])
}

var parsed = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// parseArgs runs `bulwark ARGS -help`: it exits 0 only when every flag
// before -help exists and its value parses. It returns the reason it
// refused them, or "". Results are kept per command line.
func parseArgs(bin string, args []string) string {
	key := strings.Join(args, "\x00")
	parsed.Lock()
	defer parsed.Unlock()
	if msg, ok := parsed.m[key]; ok {
		return msg
	}
	msg := ""
	if out, err := exec.Command(bin, append(slices.Clone(args), "-help")...).CombinedOutput(); err != nil {
		first, _, _ := strings.Cut(string(out), "\n")
		msg = fmt.Sprintf("%v: %s", err, first)
	}
	parsed.m[key] = msg
	return msg
}

// checkEtcdEndpoints: with the etcd StatefulSet in the bundle, bulwark lists
// exactly its members' client URLs; without it, none of the endpoints names a
// Service of this namespace that is not there.
func (c *checker) checkEtcdEndpoints(w workload, ct *corev1.Container, endpoints string) {
	got := strings.Split(endpoints, ",")
	if endpoints == "" {
		c.errorf("%s: container %s: no --etcd-endpoints: every replica would start its own embedded etcd", w, ct.Name)
		return
	}
	for _, e := range c.b.workloads() {
		if !isEtcd(e) {
			continue
		}
		want := c.etcdURLs(e, "client")
		if !slices.Equal(got, want) {
			c.errorf("%s: container %s: --etcd-endpoints=%s, want the members %s", w, ct.Name, endpoints, strings.Join(want, ","))
		}
		return
	}
	for _, u := range got {
		if strings.Contains(u, "."+c.b.namespace+".svc") {
			c.errorf("%s: container %s: --etcd-endpoints names %s, a Service of this namespace, but there is no etcd StatefulSet", w, ct.Name, u)
		}
	}
}

// etcdURLs are the URLs of every member of an etcd StatefulSet on one of its
// named ports, through its governing Service.
func (c *checker) etcdURLs(w workload, port string) []string {
	p := podPort(w, intstr.FromString(port))
	if p == nil {
		c.errorf("%s: no container port named %s", w, port)
		return nil
	}
	var urls []string
	for i := range w.replicas {
		urls = append(urls, fmt.Sprintf("http://%s-%d.%s.%s.svc:%d", w.name, i, w.sts.Spec.ServiceName, c.b.namespace, p.ContainerPort))
	}
	return urls
}

// checkEtcd: the members' names and URLs agree with the StatefulSet's
// replicas and its headless Service, so they find each other.
func (c *checker) checkEtcd(w workload) {
	ct := &w.pod.Spec.Containers[0]
	f := c.flags(w, ct, ct.Args)
	if w.replicas < 3 || w.replicas%2 == 0 {
		c.errorf("%s: %d members: run an odd number, at least 3", w, w.replicas)
	}
	if w.sts.Spec.PodManagementPolicy != "Parallel" {
		c.errorf("%s: podManagementPolicy %q: members must start together to form the cluster", w, w.sts.Spec.PodManagementPolicy)
	}
	var svc *corev1.Service
	for _, o := range c.b.objects {
		if s, ok := o.obj.(*corev1.Service); ok && s.Name == w.sts.Spec.ServiceName {
			svc = s
		}
	}
	switch {
	case svc == nil:
		c.errorf("%s: serviceName %q is not among the Services", w, w.sts.Spec.ServiceName)
	case svc.Spec.ClusterIP != corev1.ClusterIPNone:
		c.errorf("%s: Service %s is not headless: members get no DNS names", w, svc.Name)
	case !svc.Spec.PublishNotReadyAddresses:
		c.errorf("%s: Service %s: without publishNotReadyAddresses members cannot resolve each other before there is a quorum", w, svc.Name)
	case !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.pod.Labels)):
		c.errorf("%s: Service %s does not select the members", w, svc.Name)
	}
	peers := c.etcdURLs(w, "peer")
	clients := c.etcdURLs(w, "client")
	var cluster []string
	for i, u := range peers {
		cluster = append(cluster, fmt.Sprintf("%s-%d=%s", w.name, i, u))
	}
	member := func(flag string) string { return expand(w, ct, f[flag]) }
	if got, want := member("name"), w.podName(); got != want {
		c.errorf("%s: --name=%s for pod %s: want the pod's name", w, f["name"], want)
	}
	if got := f["initial-cluster"]; got != strings.Join(cluster, ",") {
		c.errorf("%s: --initial-cluster=%s, want %s", w, got, strings.Join(cluster, ","))
	}
	if len(peers) > 0 && member("initial-advertise-peer-urls") != peers[0] {
		c.errorf("%s: --initial-advertise-peer-urls=%s, want %s for pod %s", w, f["initial-advertise-peer-urls"], peers[0], w.podName())
	}
	if len(clients) > 0 && member("advertise-client-urls") != clients[0] {
		c.errorf("%s: --advertise-client-urls=%s, want %s for pod %s", w, f["advertise-client-urls"], clients[0], w.podName())
	}
	for flag, port := range map[string]string{"listen-client-urls": "client", "listen-peer-urls": "peer", "listen-metrics-urls": "metrics"} {
		p := podPort(w, intstr.FromString(port))
		if p == nil || !strings.HasSuffix(f[flag], fmt.Sprintf(":%d", p.ContainerPort)) {
			c.errorf("%s: --%s=%s is not on the container port named %s", w, flag, f[flag], port)
		}
	}
	if v, _ := c.file(w, ct, "--data-dir", f["data-dir"]); v != nil {
		c.errorf("%s: --data-dir=%s is on volume %s, not on a persistent volume claim", w, f["data-dir"], v.Name)
	}
}

// xdsTarget is an address proxies may reach Bulwark's xDS port at.
type xdsTarget struct {
	hostPort string
	tls      bool
}

// xdsTargets are the DNS names and ports of the Services in front of the
// bulwark containers' --xds-addr, in every bundle.
func (c *checker) xdsTargets() []xdsTarget {
	var out []xdsTarget
	for _, b := range c.all {
		for _, w := range b.workloads() {
			for _, ct := range w.containers() {
				if imageName(ct.Image) != "bulwark" {
					continue
				}
				f := map[string]string{}
				for _, a := range ct.Args {
					k, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
					f[k] = v
				}
				_, port, err := hostPort(f["xds-addr"])
				if err != nil {
					continue
				}
				for _, o := range b.objects {
					s, ok := o.obj.(*corev1.Service)
					if !ok || len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(w.pod.Labels)) {
						continue
					}
					for _, sp := range s.Spec.Ports {
						if p := containerPort(ct, sp.TargetPort); p != nil && p.ContainerPort == port {
							out = append(out, xdsTarget{fmt.Sprintf("%s.%s.svc.cluster.local:%d", s.Name, b.namespace, sp.Port), f["tls-cert"] != ""})
						}
					}
				}
			}
		}
	}
	return out
}

func (c *checker) target(w workload, what, hp string) (xdsTarget, bool) {
	targets := c.xdsTargets()
	for _, t := range targets {
		if t.hostPort == hp {
			return t, true
		}
	}
	c.errorf("%s: %s points at %s, not at Bulwark's xDS Service (%v)", w, what, hp, targets)
	return xdsTarget{}, false
}

// configMapData is the text of a key of a ConfigMap manifest.
func (c *checker) configMapData(name, key string) (string, bool) {
	for _, o := range c.b.objects {
		if cm, ok := o.obj.(*corev1.ConfigMap); ok && cm.Name == name {
			v, ok := cm.Data[key]
			return v, ok
		}
	}
	return "", false
}

// checkEnvoySidecar: the bootstrap Envoy is started with is a mounted
// ConfigMap key, a valid Bootstrap, and its ADS cluster is the xDS Service
// (over TLS, verifying the Service's name, when Bulwark serves TLS).
func (c *checker) checkEnvoySidecar(w workload, ct *corev1.Container) {
	var cfgPath string
	hasNode := false
	for i, a := range ct.Args {
		if (a == "-c" || a == "--config-path") && i+1 < len(ct.Args) {
			cfgPath = ct.Args[i+1]
		}
		hasNode = hasNode || (a == "--service-node" && i+1 < len(ct.Args) && strings.Contains(ct.Args[i+1], "$(POD_NAME)"))
	}
	if !hasNode {
		c.errorf("%s: container %s: no --service-node $(POD_NAME): every sidecar would have the same node.id", w, ct.Name)
	}
	if cfgPath == "" {
		c.errorf("%s: container %s: no -c bootstrap", w, ct.Name)
		return
	}
	v, key := c.file(w, ct, "-c", cfgPath)
	if v == nil || v.ConfigMap == nil {
		return
	}
	text, ok := c.configMapData(v.ConfigMap.Name, key)
	if !ok {
		c.errorf("%s: container %s: bootstrap %s: ConfigMap %s is generated, not a manifest", w, ct.Name, cfgPath, v.ConfigMap.Name)
		return
	}
	var b bootstrapv3.Bootstrap
	js, err := yaml.YAMLToJSON([]byte(text))
	if err == nil {
		err = protojson.Unmarshal(js, &b)
	}
	if err == nil {
		err = b.ValidateAll()
	}
	if err != nil {
		c.errorf("%s: container %s: bootstrap %s: %v", w, ct.Name, cfgPath, err)
		return
	}
	ads := b.GetDynamicResources().GetAdsConfig().GetGrpcServices()
	if len(ads) != 1 {
		c.errorf("%s: bootstrap %s: want one ADS gRPC service, got %d", w, cfgPath, len(ads))
		return
	}
	name := ads[0].GetEnvoyGrpc().GetClusterName()
	for _, cl := range b.GetStaticResources().GetClusters() {
		if cl.GetName() != name {
			continue
		}
		addr := cl.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		host := addr.GetAddress()
		t, ok := c.target(w, "bootstrap "+cfgPath, fmt.Sprintf("%s:%d", host, addr.GetPortValue()))
		if !ok {
			return
		}
		ts := cl.GetTransportSocket()
		if !t.tls {
			if ts != nil {
				c.errorf("%s: bootstrap %s: TLS to an xDS port that serves plaintext", w, cfgPath)
			}
			return
		}
		var up tlsv3.UpstreamTlsContext
		if ts.GetName() != "envoy.transport_sockets.tls" || ts.GetTypedConfig().UnmarshalTo(&up) != nil {
			c.errorf("%s: bootstrap %s: cluster %s has no TLS transport socket, but Bulwark's xDS port serves TLS", w, cfgPath, name)
			return
		}
		if up.GetSni() != host {
			c.errorf("%s: bootstrap %s: sni %q, want %q", w, cfgPath, up.GetSni(), host)
		}
		vc := up.GetCommonTlsContext().GetValidationContext()
		if !slices.ContainsFunc(vc.GetMatchTypedSubjectAltNames(), func(m *tlsv3.SubjectAltNameMatcher) bool { return m.GetMatcher().GetExact() == host }) {
			c.errorf("%s: bootstrap %s: the server certificate's name %s is not verified", w, cfgPath, host)
		}
		c.file(w, ct, "trusted_ca", vc.GetTrustedCa().GetFilename())
		return
	}
	c.errorf("%s: bootstrap %s: no static cluster %s for ADS", w, cfgPath, name)
}

// checkGRPCClient: GRPC_XDS_BOOTSTRAP names a mounted file, written from the
// bootstrap ConfigMap by an init container (with the pod's name as node.id),
// which gRPC's own parser accepts and which points at the xDS Service.
func (c *checker) checkGRPCClient(w workload, ct *corev1.Container, p string) {
	v, _ := c.file(w, ct, "GRPC_XDS_BOOTSTRAP", p)
	if v == nil {
		return
	}
	var text string
	var ok bool
	switch {
	case v.ConfigMap != nil:
		text, ok = c.configMapData(v.ConfigMap.Name, strings.TrimPrefix(p, mountOf(ct, v.Name)+"/"))
	case v.EmptyDir != nil:
		text, ok = c.renderedBootstrap(w, v.Name, p)
	}
	if !ok {
		c.errorf("%s: container %s: GRPC_XDS_BOOTSTRAP=%s is neither a ConfigMap key nor written from one by an init container", w, ct.Name, p)
		return
	}
	if err := parseGRPCBootstrap([]byte(text)); err != nil {
		c.errorf("%s: bootstrap %s: gRPC refuses it: %v", w, p, err)
		return
	}
	var b struct {
		XDSServers []struct {
			ServerURI    string `json:"server_uri"`
			ChannelCreds []struct {
				Type   string `json:"type"`
				Config struct {
					CA string `json:"ca_certificate_file"`
				} `json:"config"`
			} `json:"channel_creds"`
		} `json:"xds_servers"`
	}
	if err := json.Unmarshal([]byte(text), &b); err != nil || len(b.XDSServers) == 0 {
		c.errorf("%s: bootstrap %s: no xds_servers (%v)", w, p, err)
		return
	}
	for _, s := range b.XDSServers {
		t, ok := c.target(w, "bootstrap "+p, s.ServerURI)
		if !ok {
			continue
		}
		creds := s.ChannelCreds[0]
		if t.tls != (creds.Type == "tls") {
			c.errorf("%s: bootstrap %s: channel_creds %q, but Bulwark's xDS port serves TLS: %v", w, p, creds.Type, t.tls)
		}
		if creds.Type == "tls" {
			c.file(w, ct, "ca_certificate_file", creds.Config.CA)
		}
	}
}

func mountOf(ct *corev1.Container, volume string) string {
	for _, m := range ct.VolumeMounts {
		if m.Name == volume {
			return strings.TrimSuffix(m.MountPath, "/")
		}
	}
	return ""
}

// renderedBootstrap finds the init container that writes path into the
// emptyDir volume from a ConfigMap template, and renders the template as its
// command does: @POD_NAME@ becomes the pod's name.
func (c *checker) renderedBootstrap(w workload, volume, path string) (string, bool) {
	for i := range w.pod.Spec.InitContainers {
		ic := &w.pod.Spec.InitContainers[i]
		script := strings.Join(append(slices.Clone(ic.Command), ic.Args...), " ")
		if mountOf(ic, volume) == "" || !strings.Contains(script, "> "+path) {
			continue
		}
		for _, m := range ic.VolumeMounts {
			v := c.volume(w, m.Name)
			if v == nil || v.ConfigMap == nil {
				continue
			}
			for _, key := range c.b.configMap[v.ConfigMap.Name] {
				if !strings.Contains(script, strings.TrimSuffix(m.MountPath, "/")+"/"+key) {
					continue
				}
				text, ok := c.configMapData(v.ConfigMap.Name, key)
				if !ok {
					return "", false
				}
				if !strings.Contains(text, "@POD_NAME@") {
					c.errorf("%s: ConfigMap %s %s: node.id is the same for every pod (no @POD_NAME@)", w, v.ConfigMap.Name, key)
				}
				if !strings.Contains(script, `s/@POD_NAME@/$POD_NAME/`) || !slices.ContainsFunc(ic.Env, func(e corev1.EnvVar) bool {
					return e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
				}) {
					c.errorf("%s: init container %s does not put the pod's name in place of @POD_NAME@", w, ic.Name)
				}
				return strings.ReplaceAll(text, "@POD_NAME@", w.podName()), true
			}
		}
	}
	return "", false
}

// parseGRPCBootstrap has gRPC-Go parse a bootstrap: its xDS resolver reads
// the bootstrap when it is built, so build one (its client's connection
// attempts stop with Close).
func parseGRPCBootstrap(raw []byte) error {
	b, err := xds.NewXDSResolverWithConfigForTesting(raw)
	if err != nil {
		return err
	}
	u, err := url.Parse("xds:///payments")
	if err != nil {
		return err
	}
	r, err := b.Build(resolver.Target{URL: *u}, nopClientConn{}, resolver.BuildOptions{})
	if err != nil {
		return err
	}
	r.Close()
	return nil
}

// nopClientConn takes the resolver's updates and drops them.
type nopClientConn struct{}

func (nopClientConn) UpdateState(resolver.State) error { return nil }
func (nopClientConn) ReportError(error)                {}
func (nopClientConn) NewAddress([]resolver.Address)    {}
func (nopClientConn) ParseServiceConfig(string) *serviceconfig.ParseResult {
	return &serviceconfig.ParseResult{}
}
