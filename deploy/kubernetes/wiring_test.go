package kubernetes

import (
	"fmt"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// workload is a Deployment or StatefulSet: what makes pods.
type workload struct {
	obj      object
	name     string
	replicas int32
	selector *metav1.LabelSelector
	pod      *corev1.PodTemplateSpec
	claims   []corev1.PersistentVolumeClaim
	sts      *appsv1.StatefulSet
}

func (w workload) String() string { return w.obj.String() }

// containers lists the pod's containers, init (and native sidecar) ones first.
func (w workload) containers() []*corev1.Container {
	var cs []*corev1.Container
	for i := range w.pod.Spec.InitContainers {
		cs = append(cs, &w.pod.Spec.InitContainers[i])
	}
	for i := range w.pod.Spec.Containers {
		cs = append(cs, &w.pod.Spec.Containers[i])
	}
	return cs
}

// podName is a name this workload's pods may have, for $(POD_NAME).
func (w workload) podName() string {
	if w.sts != nil {
		return w.name + "-0"
	}
	return w.name + "-5d8f7c9b4-x2x7q"
}

// checker collects the problems of every bundle; other bundles are there to
// resolve references across namespaces (a client's bootstrap naming the
// xDS Service).
type checker struct {
	all    []*bundle
	b      *bundle
	errs   []string
	bulwrk string // the built bulwark binary
	routes string // the source of the admin API's route table
	// checked counts the containers each component check ran on, so a
	// renamed image cannot make a check skip silently.
	checked map[string]int
}

func (c *checker) errorf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Sprintf(format, args...))
}

func (b *bundle) workloads() []workload {
	var ws []workload
	for _, o := range b.objects {
		switch v := o.obj.(type) {
		case *appsv1.Deployment:
			ws = append(ws, workload{obj: o, name: v.Name, replicas: replicas(v.Spec.Replicas), selector: v.Spec.Selector, pod: &v.Spec.Template})
		case *appsv1.StatefulSet:
			ws = append(ws, workload{obj: o, name: v.Name, replicas: replicas(v.Spec.Replicas), selector: v.Spec.Selector, pod: &v.Spec.Template, claims: v.Spec.VolumeClaimTemplates, sts: v})
		}
	}
	return ws
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

// selecting returns the workloads whose pods a selector picks.
func (b *bundle) selecting(sel labels.Selector) []workload {
	var out []workload
	for _, w := range b.workloads() {
		if sel.Matches(labels.Set(w.pod.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

func selector(s *metav1.LabelSelector) labels.Selector {
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		return labels.Nothing()
	}
	return sel
}

// check runs every check on bundle b.
func (c *checker) check(b *bundle) {
	c.b = b
	c.checkNamespaces()
	for _, w := range b.workloads() {
		c.checkWorkload(w)
	}
	for _, o := range b.objects {
		switch v := o.obj.(type) {
		case *corev1.Service:
			c.checkService(o, v)
		case *policyv1.PodDisruptionBudget:
			c.checkPDB(o, v)
		case *networkingv1.NetworkPolicy:
			c.checkNetworkPolicy(o, v)
		case *corev1.ConfigMap:
			c.checkConfigMapUsed(o, v)
		}
	}
}

func (c *checker) checkNamespaces() {
	for _, o := range c.b.objects {
		if _, ok := o.obj.(*corev1.Namespace); ok {
			if o.meta().GetName() != c.b.namespace {
				c.errorf("%s: namespace %q, the kustomization's is %q", o, o.meta().GetName(), c.b.namespace)
			}
			continue
		}
		if ns := o.meta().GetNamespace(); ns != c.b.namespace {
			c.errorf("%s: namespace %q, the kustomization's is %q", o, ns, c.b.namespace)
		}
	}
}

func (c *checker) checkWorkload(w workload) {
	own := labels.Set(w.pod.Labels)
	if w.selector == nil || !selector(w.selector).Matches(own) {
		c.errorf("%s: selector does not match its pod labels %v", w, w.pod.Labels)
	}
	for _, t := range w.pod.Spec.TopologySpreadConstraints {
		if !selector(t.LabelSelector).Matches(own) {
			c.errorf("%s: topologySpreadConstraints %s: labelSelector does not match its own pods", w, t.TopologyKey)
		}
	}
	if a := w.pod.Spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, t := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			if !selector(t.LabelSelector).Matches(own) {
				c.errorf("%s: podAntiAffinity %s: labelSelector does not match its own pods", w, t.TopologyKey)
			}
		}
	}
	c.checkVolumes(w)
	for _, ct := range w.containers() {
		c.checkProbes(w, ct)
		c.checkEnvRefs(w, ct)
		if imageName(ct.Image) == "bulwark" {
			c.checked["bulwark"]++
			c.checkBulwark(w, ct)
		}
		if strings.HasPrefix(ct.Image, "envoyproxy/envoy") {
			c.checked["envoy"]++
			c.checkEnvoySidecar(w, ct)
		}
		for _, e := range ct.Env {
			if e.Name == "GRPC_XDS_BOOTSTRAP" {
				c.checked["grpc"]++
				c.checkGRPCClient(w, ct, e.Value)
			}
		}
	}
	if isEtcd(w) {
		c.checked["etcd"]++
		c.checkEtcd(w)
	}
}

// isEtcd: a StatefulSet running etcd.
func isEtcd(w workload) bool {
	return w.sts != nil && strings.HasSuffix(imageName(w.pod.Spec.Containers[0].Image), "/etcd")
}

func imageName(image string) string {
	name, _, _ := strings.Cut(image, ":")
	return name
}

// checkVolumes: every mount names a volume of the pod (or a claim template),
// every volume is mounted, and every Secret, ConfigMap and key a volume
// names is among the manifests.
func (c *checker) checkVolumes(w workload) {
	mounted := map[string]bool{}
	for _, ct := range w.containers() {
		for _, m := range ct.VolumeMounts {
			mounted[m.Name] = true
			if c.volume(w, m.Name) == nil && !slices.ContainsFunc(w.claims, func(p corev1.PersistentVolumeClaim) bool { return p.Name == m.Name }) {
				c.errorf("%s: container %s mounts volume %q, which the pod does not have", w, ct.Name, m.Name)
			}
		}
	}
	for _, v := range w.pod.Spec.Volumes {
		if !mounted[v.Name] {
			c.errorf("%s: volume %q is mounted by no container", w, v.Name)
		}
		switch {
		case v.Secret != nil:
			keys, ok := c.b.secrets[v.Secret.SecretName]
			if !ok {
				c.errorf("%s: volume %q: Secret %q is not among the manifests", w, v.Name, v.Secret.SecretName)
			}
			c.checkItems(w, v.Name, "Secret", v.Secret.SecretName, keys, v.Secret.Items)
		case v.ConfigMap != nil:
			keys, ok := c.b.configMap[v.ConfigMap.Name]
			if !ok {
				c.errorf("%s: volume %q: ConfigMap %q is not among the manifests", w, v.Name, v.ConfigMap.Name)
			}
			c.checkItems(w, v.Name, "ConfigMap", v.ConfigMap.Name, keys, v.ConfigMap.Items)
		}
	}
	for _, p := range w.claims {
		if !mounted[p.Name] {
			c.errorf("%s: volumeClaimTemplate %q is mounted by no container", w, p.Name)
		}
	}
}

func (c *checker) checkItems(w workload, vol, kind, name string, keys []string, items []corev1.KeyToPath) {
	for _, it := range items {
		if !slices.Contains(keys, it.Key) {
			c.errorf("%s: volume %q: %s %q has no key %q", w, vol, kind, name, it.Key)
		}
	}
}

func (c *checker) volume(w workload, name string) *corev1.Volume {
	for i, v := range w.pod.Spec.Volumes {
		if v.Name == name {
			return &w.pod.Spec.Volumes[i]
		}
	}
	return nil
}

// file resolves a path a container reads: the mount it is under, and for a
// Secret or ConfigMap volume the key it names, which must exist. It returns
// the volume and the key.
func (c *checker) file(w workload, ct *corev1.Container, what, p string) (*corev1.Volume, string) {
	for _, m := range ct.VolumeMounts {
		rel, ok := strings.CutPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		v := c.volume(w, m.Name)
		if v == nil {
			return nil, "" // reported by checkVolumes
		}
		var kind, name string
		var keys []string
		switch {
		case v.Secret != nil:
			kind, name, keys = "Secret", v.Secret.SecretName, c.b.secrets[v.Secret.SecretName]
		case v.ConfigMap != nil:
			kind, name, keys = "ConfigMap", v.ConfigMap.Name, c.b.configMap[v.ConfigMap.Name]
		default:
			return v, rel
		}
		if !slices.Contains(keys, rel) {
			c.errorf("%s: container %s: %s %s: %s %q has no key %q", w, ct.Name, what, p, kind, name, rel)
		}
		return v, rel
	}
	c.errorf("%s: container %s: %s %s is under no volume mount", w, ct.Name, what, p)
	return nil, ""
}

func (c *checker) checkProbes(w workload, ct *corev1.Container) {
	for kind, p := range map[string]*corev1.Probe{"readinessProbe": ct.ReadinessProbe, "livenessProbe": ct.LivenessProbe, "startupProbe": ct.StartupProbe} {
		if p == nil {
			continue
		}
		var port intstr.IntOrString
		switch {
		case p.HTTPGet != nil:
			port = p.HTTPGet.Port
		case p.TCPSocket != nil:
			port = p.TCPSocket.Port
		case p.GRPC != nil:
			port = intstr.FromInt32(p.GRPC.Port)
		default:
			continue
		}
		if containerPort(ct, port) == nil {
			c.errorf("%s: container %s: %s port %s is no port of the container", w, ct.Name, kind, port.String())
		}
	}
}

func containerPort(ct *corev1.Container, port intstr.IntOrString) *corev1.ContainerPort {
	for i, p := range ct.Ports {
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			return &ct.Ports[i]
		}
	}
	return nil
}

// podPort finds a port of any container of the pod.
func podPort(w workload, port intstr.IntOrString) *corev1.ContainerPort {
	for _, ct := range w.containers() {
		if p := containerPort(ct, port); p != nil {
			return p
		}
	}
	return nil
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkEnvRefs: every $(VAR) in command and args is an env var of the
// container (Kubernetes leaves unknown ones as they are).
func (c *checker) checkEnvRefs(w workload, ct *corev1.Container) {
	for _, a := range append(slices.Clone(ct.Command), ct.Args...) {
		for _, m := range varRef.FindAllStringSubmatch(a, -1) {
			if !slices.ContainsFunc(ct.Env, func(e corev1.EnvVar) bool { return e.Name == m[1] }) {
				c.errorf("%s: container %s: %s uses $(%s), which is not defined in env", w, ct.Name, a, m[1])
			}
		}
	}
}

// expand replaces $(VAR) as the kubelet would, with the pod's name for a
// variable from metadata.name.
func expand(w workload, ct *corev1.Container, s string) string {
	return varRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := varRef.FindStringSubmatch(ref)[1]
		for _, e := range ct.Env {
			if e.Name != name {
				continue
			}
			if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
				return w.podName()
			}
			return e.Value
		}
		return ref
	})
}

// flags reads --name=value arguments (a bare --name is "true").
func (c *checker) flags(w workload, ct *corev1.Container, args []string) map[string]string {
	out := map[string]string{}
	for _, a := range args {
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			c.errorf("%s: container %s: argument %q: write flags as --name=value", w, ct.Name, a)
			continue
		}
		k, v, found := strings.Cut(name, "=")
		if !found {
			v = "true"
		}
		out[k] = v
	}
	return out
}

func (c *checker) checkService(o object, s *corev1.Service) {
	if len(s.Spec.Selector) == 0 {
		c.errorf("%s: has no selector", o)
		return
	}
	pods := c.b.selecting(labels.SelectorFromSet(s.Spec.Selector))
	if len(pods) == 0 {
		c.errorf("%s: selects no pod", o)
	}
	for _, p := range s.Spec.Ports {
		for _, w := range pods {
			target := p.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(p.Port)
			}
			if podPort(w, target) == nil {
				c.errorf("%s: port %s: targetPort %s is no container port of %s", o, p.Name, target.String(), w)
			}
		}
	}
}

func (c *checker) checkPDB(o object, p *policyv1.PodDisruptionBudget) {
	pods := c.b.selecting(selector(p.Spec.Selector))
	if len(pods) != 1 {
		c.errorf("%s: selects the pods of %d workloads, want 1", o, len(pods))
		return
	}
	n := int(pods[0].replicas)
	switch {
	case p.Spec.MaxUnavailable != nil:
		v, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MaxUnavailable, n, true)
		if err != nil || v < 1 || v >= n || (pods[0].sts != nil && n-v <= n/2) {
			c.errorf("%s: maxUnavailable %s of %d replicas: must allow a disruption and keep the rest (a quorum for etcd)", o, p.Spec.MaxUnavailable.String(), n)
		}
	case p.Spec.MinAvailable != nil:
		v, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MinAvailable, n, true)
		if err != nil || v >= n || v < 1 {
			c.errorf("%s: minAvailable %s of %d replicas: must allow a disruption and keep some", o, p.Spec.MinAvailable.String(), n)
		}
	default:
		c.errorf("%s: neither maxUnavailable nor minAvailable", o)
	}
}

func (c *checker) checkNetworkPolicy(o object, np *networkingv1.NetworkPolicy) {
	pods := c.b.selecting(selector(&np.Spec.PodSelector))
	if len(pods) == 0 {
		c.errorf("%s: podSelector selects no pod", o)
	}
	for i, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port == nil {
				continue
			}
			for _, w := range pods {
				if podPort(w, *p.Port) == nil {
					c.errorf("%s: ingress[%d]: port %s is no container port of %s", o, i, p.Port.String(), w)
				}
			}
		}
		for j, from := range rule.From {
			// A podSelector alone picks pods of this namespace: they must exist.
			if from.PodSelector != nil && from.NamespaceSelector == nil && len(from.PodSelector.MatchLabels)+len(from.PodSelector.MatchExpressions) > 0 {
				if len(c.b.selecting(selector(from.PodSelector))) == 0 {
					c.errorf("%s: ingress[%d].from[%d]: podSelector selects no pod", o, i, j)
				}
			}
		}
	}
}

func (c *checker) checkConfigMapUsed(o object, cm *corev1.ConfigMap) {
	for _, w := range c.b.workloads() {
		for _, v := range w.pod.Spec.Volumes {
			if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
				return
			}
		}
	}
	c.errorf("%s: used by no pod", o)
}

// hostPort splits "host:port".
func hostPort(addr string) (string, int32, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseInt(p, 10, 32)
	return h, int32(n), err
}

// readAdminRoutes reads the admin API's route table from its source, so the
// probes' paths are checked against the real routes.
func readAdminRoutes() (string, error) {
	raw, err := os.ReadFile(path.Join("..", "..", "controlplane", "adminapi", "admin.go"))
	return string(raw), err
}
