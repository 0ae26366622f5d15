package kubernetes

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// bundles are the kustomization directories: the control plane with its
// etcd, the same over an existing etcd cluster, and an application example.
var bundles = []string{".", "external-etcd", "examples"}

// bulwarkBin is the real binary, built once: the containers' args are
// parsed by its own flag set.
var bulwarkBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bulwark-k8s")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bulwarkBin = filepath.Join(dir, "bulwark")
	out, err := exec.Command("go", "build", "-o", bulwarkBin, "../../cmd/bulwark").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/bulwark: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func loadAll(t *testing.T) []*bundle {
	t.Helper()
	var all []*bundle
	for _, dir := range bundles {
		b, err := loadBundle(dir)
		require.NoError(t, err)
		all = append(all, b)
	}
	return all
}

func problems(t *testing.T, all []*bundle, tweak ...func(*checker)) []string {
	return run(t, all, tweak...).errs
}

func run(t *testing.T, all []*bundle, tweak ...func(*checker)) *checker {
	routes, err := readAdminRoutes()
	require.NoError(t, err)
	c := &checker{all: all, bulwrk: bulwarkBin, routes: routes, checked: map[string]int{}}
	for _, f := range tweak {
		f(c)
	}
	for _, b := range all {
		c.check(b)
	}
	return c
}

// Every manifest decodes strictly into the official API types, and each
// bundle holds what a deployment needs.
func TestManifestsDecodeStrictly(t *testing.T) {
	all := loadAll(t)
	kinds := func(b *bundle) map[string]int {
		n := map[string]int{}
		for _, o := range b.objects {
			n[o.obj.GetObjectKind().GroupVersionKind().Kind]++
		}
		return n
	}
	require.Equal(t, map[string]int{"Namespace": 1, "Deployment": 1, "Service": 3, "PodDisruptionBudget": 2, "StatefulSet": 1, "NetworkPolicy": 2}, kinds(all[0]))
	require.ElementsMatch(t, []string{"bulwark-tokens", "bulwark-tls"}, keysOf(all[0].secrets))
	require.Equal(t, map[string]int{"Namespace": 1, "Deployment": 1, "Service": 2, "PodDisruptionBudget": 1, "NetworkPolicy": 1}, kinds(all[1]))
	require.Equal(t, map[string]int{"Namespace": 1, "Deployment": 2, "ConfigMap": 2}, kinds(all[2]))

	// The overlay's patch merged into the base Deployment as kustomize
	// merges it: its args replace the base's, its volume joins the others.
	ext := find[*appsv1.Deployment](t, all[1], "bulwark").Spec.Template.Spec
	require.Contains(t, ext.Containers[0].Args, "--etcd-ca=/etc/bulwark/etcd/ca.crt")
	require.NotContains(t, strings.Join(ext.Containers[0].Args, " "), "etcd-0.etcd")
	var vols []string
	for _, v := range ext.Volumes {
		vols = append(vols, v.Name)
	}
	require.ElementsMatch(t, []string{"tokens", "tls", "etcd-client"}, vols)
	require.Len(t, ext.Containers[0].VolumeMounts, 3)
	require.NotNil(t, ext.Containers[0].ReadinessProbe, "the base's fields stay")

	// No manifest is left out of every kustomization (and so of this test).
	read := map[string]bool{}
	for _, b := range all {
		for _, f := range b.files {
			read[filepath.Clean(f)] = true
		}
	}
	require.NoError(t, filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml") || strings.HasSuffix(p, ".json")) {
			require.True(t, read[p], "%s is in no kustomization", p)
		}
		return err
	}))

	d := find[*appsv1.Deployment](t, all[0], "bulwark")
	require.EqualValues(t, 3, *d.Spec.Replicas)
	res := d.Spec.Template.Spec.Containers[0].Resources
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		require.Contains(t, res.Requests, r)
		require.Contains(t, res.Limits, r)
	}
	sts := find[*appsv1.StatefulSet](t, all[0], "etcd")
	require.EqualValues(t, 3, *sts.Spec.Replicas)
	require.Len(t, sts.Spec.VolumeClaimTemplates, 1, "a persistent volume per member")
}

// Strict decoding refuses an unknown field and an unknown kind.
func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	raw, err := os.ReadFile("control-plane/bulwark.yaml")
	require.NoError(t, err)
	dir := t.TempDir()
	for name, edit := range map[string][2]string{
		"unknown field":  {"          readinessProbe:", "          readynessProbe:"},
		"duplicate":      {"  replicas: 3\n", "  replicas: 3\n  replicas: 4\n"},
		"no kind":        {"kind: PodDisruptionBudget", "kind: PodDisruptionBugdet"},
		"mistyped value": {"      containerPort: 18000", "      containerPort: \"18000\""},
	} {
		bad := strings.Replace(string(raw), edit[0], edit[1], 1)
		require.NotEqual(t, string(raw), bad, name)
		p := filepath.Join(dir, "bad.yaml")
		require.NoError(t, os.WriteFile(p, []byte(bad), 0o644))
		_, err := decodeFile(p)
		require.Error(t, err, name)
	}
}

// The loader follows kustomize's loading rules: an overlay inside its base
// and a file outside the kustomization's directory are refused.
func TestKustomizeLoadingRules(t *testing.T) {
	dir := t.TempDir()
	write := func(p, content string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644))
	}
	const head = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
	write("base/kustomization.yaml", head+"resources: [ns.yaml]\n")
	write("base/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
	write("base/overlay/kustomization.yaml", head+"resources: [..]\n")
	write("sibling/kustomization.yaml", head+"resources: [../base]\n")
	write("file/kustomization.yaml", head+"resources: [../base/ns.yaml]\n")
	write("patch/kustomization.yaml", head+"resources: [../base]\npatches: [{path: ../base/ns.yaml}]\n")
	_, err := loadBundle(filepath.Join(dir, "base/overlay"))
	require.ErrorContains(t, err, "kustomize refuses the cycle")
	_, err = loadBundle(filepath.Join(dir, "file"))
	require.ErrorContains(t, err, "outside the kustomization's directory")
	_, err = loadBundle(filepath.Join(dir, "patch"))
	require.ErrorContains(t, err, "outside the kustomization's directory")
	b, err := loadBundle(filepath.Join(dir, "sibling"))
	require.NoError(t, err)
	require.Len(t, b.objects, 1)
}

// The manifests are wired together: see the checks in wiring_test.go and
// components_test.go.
func TestManifestsAreWired(t *testing.T) {
	c := run(t, loadAll(t))
	require.Empty(t, c.errs, "%s", strings.Join(c.errs, "\n"))
	// Bulwark in the base and the overlay, the etcd StatefulSet, the Envoy
	// sidecar and the gRPC client were each checked.
	require.Equal(t, map[string]int{"bulwark": 2, "etcd": 1, "envoy": 1, "grpc": 1}, c.checked)
}

func find[T interface {
	*appsv1.Deployment | *appsv1.StatefulSet | *corev1.Service | *corev1.ConfigMap | *policyv1.PodDisruptionBudget | *networkingv1.NetworkPolicy
	GetName() string
}](t *testing.T, b *bundle, name string) T {
	t.Helper()
	for _, o := range b.objects {
		if v, ok := o.obj.(T); ok && v.GetName() == name {
			return v
		}
	}
	t.Fatalf("%s: no %T %s", b.dir, *new(T), name)
	return *new(T)
}

func setArg(args []string, flag, value string) []string {
	for i, a := range args {
		if strings.HasPrefix(a, "--"+flag+"=") {
			args[i] = "--" + flag + "=" + value
			return args
		}
	}
	return append(args, "--"+flag+"="+value)
}

// Each check fails on the breakage it is there for.
func TestWiringChecksCatchBreakage(t *testing.T) {
	bw := func(b *bundle) *corev1.Container {
		return &find[*appsv1.Deployment](t, b, "bulwark").Spec.Template.Spec.Containers[0]
	}
	etcd := func(b *bundle) *corev1.Container {
		return &find[*appsv1.StatefulSet](t, b, "etcd").Spec.Template.Spec.Containers[0]
	}
	envoy := func(b *bundle) *corev1.Container {
		return &find[*appsv1.Deployment](t, b, "checkout").Spec.Template.Spec.InitContainers[0]
	}
	cases := []struct {
		name   string
		bundle int
		break_ func(b *bundle)
		want   string
	}{
		{"namespace", 0, func(b *bundle) { find[*corev1.Service](t, b, "bulwark-xds").Namespace = "default" }, `namespace "default"`},
		{"deployment selector", 0, func(b *bundle) {
			find[*appsv1.Deployment](t, b, "bulwark").Spec.Selector.MatchLabels["app.kubernetes.io/name"] = "other"
		}, "selector does not match its pod labels"},
		{"spread selector", 0, func(b *bundle) {
			find[*appsv1.Deployment](t, b, "bulwark").Spec.Template.Spec.TopologySpreadConstraints[0].LabelSelector.MatchLabels["app.kubernetes.io/name"] = "x"
		}, "labelSelector does not match its own pods"},
		{"anti-affinity selector", 0, func(b *bundle) {
			find[*appsv1.StatefulSet](t, b, "etcd").Spec.Template.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].LabelSelector.MatchLabels["app.kubernetes.io/name"] = "x"
		}, "labelSelector does not match its own pods"},
		{"service selector", 0, func(b *bundle) {
			find[*corev1.Service](t, b, "bulwark-admin").Spec.Selector["app.kubernetes.io/name"] = "bulwarc"
		}, "selects no pod"},
		{"service targetPort", 0, func(b *bundle) {
			find[*corev1.Service](t, b, "bulwark-xds").Spec.Ports[0].TargetPort = intstr.FromString("grpc")
		}, "targetPort grpc is no container port"},
		{"container port name", 0, func(b *bundle) { bw(b).Ports[1].Name = "http" }, "targetPort admin is no container port"},
		{"pdb selector", 0, func(b *bundle) {
			find[*policyv1.PodDisruptionBudget](t, b, "bulwark").Spec.Selector.MatchLabels["app.kubernetes.io/name"] = "x"
		}, "selects the pods of 0 workloads"},
		{"pdb blocks every drain", 0, func(b *bundle) {
			v := intstr.FromInt32(0)
			find[*policyv1.PodDisruptionBudget](t, b, "bulwark").Spec.MaxUnavailable = &v
		}, "must allow a disruption"},
		{"pdb breaks etcd quorum", 0, func(b *bundle) {
			v := intstr.FromInt32(2)
			find[*policyv1.PodDisruptionBudget](t, b, "etcd").Spec.MaxUnavailable = &v
		}, "a quorum for etcd"},
		{"networkpolicy selector", 0, func(b *bundle) {
			find[*networkingv1.NetworkPolicy](t, b, "etcd").Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] = "etc"
		}, "podSelector selects no pod"},
		{"networkpolicy port", 0, func(b *bundle) {
			p := intstr.FromString("grpc")
			find[*networkingv1.NetworkPolicy](t, b, "bulwark").Spec.Ingress[0].Ports[0].Port = &p
		}, "port grpc is no container port"},
		{"networkpolicy from", 0, func(b *bundle) {
			find[*networkingv1.NetworkPolicy](t, b, "etcd").Spec.Ingress[0].From[0].PodSelector.MatchLabels["app.kubernetes.io/name"] = "bulwarc"
		}, "from[0]: podSelector selects no pod"},
		{"mount of a missing volume", 0, func(b *bundle) { bw(b).VolumeMounts[0].Name = "token" }, `mounts volume "token", which the pod does not have`},
		{"missing secret", 0, func(b *bundle) {
			find[*appsv1.Deployment](t, b, "bulwark").Spec.Template.Spec.Volumes[1].Secret.SecretName = "tls"
		}, `Secret "tls" is not among the manifests`},
		{"missing configmap", 2, func(b *bundle) {
			find[*appsv1.Deployment](t, b, "checkout").Spec.Template.Spec.Volumes[0].ConfigMap.Name = "envoy"
		}, `ConfigMap "envoy" is not among the manifests`},
		{"unused configmap", 2, func(b *bundle) {
			find[*appsv1.Deployment](t, b, "checkout").Spec.Template.Spec.Volumes[0].ConfigMap.Name = "grpc-xds-bootstrap"
		}, "ConfigMap/checkout-envoy: used by no pod"},
		{"probe port", 0, func(b *bundle) { etcd(b).ReadinessProbe.HTTPGet.Port = intstr.FromString("health") }, "readinessProbe port health is no port"},
		{"probe path", 0, func(b *bundle) { bw(b).LivenessProbe.HTTPGet.Path = "/healthz" }, "livenessProbe path /healthz, want /health/live"},
		{"probe on the xDS port", 0, func(b *bundle) { bw(b).ReadinessProbe.HTTPGet.Port = intstr.FromString("xds") }, "is not the --admin-addr port"},
		{"probe scheme", 0, func(b *bundle) { bw(b).ReadinessProbe.HTTPGet.Scheme = corev1.URISchemeHTTP }, "but the admin port serves TLS"},
		{"unknown flag", 0, func(b *bundle) { bw(b).Args = append(bw(b).Args, "--etcd-endpoint=x") }, "bulwark rejects the args"},
		{"bad flag value", 0, func(b *bundle) { bw(b).Args = append(bw(b).Args, "--store-grace=10") }, "bulwark rejects the args"},
		{"undefined variable", 0, func(b *bundle) { bw(b).Args = setArg(bw(b).Args, "replica", "$(NODE_NAME)") }, "uses $(NODE_NAME), which is not defined"},
		{"xds port", 0, func(b *bundle) { bw(b).Args = setArg(bw(b).Args, "xds-addr", "0.0.0.0:15000") }, "--xds-addr port 15000 is no container port"},
		{"file not mounted", 0, func(b *bundle) { bw(b).Args = setArg(bw(b).Args, "tls-cert", "/etc/tls/tls.crt") }, "--tls-cert /etc/tls/tls.crt is under no volume mount"},
		{"no such key", 0, func(b *bundle) { bw(b).Args = setArg(bw(b).Args, "token-file", "/etc/bulwark/tokens/token") }, `has no key "token"`},
		{"no token file", 0, func(b *bundle) { bw(b).Args = setArg(bw(b).Args, "token-file", "") }, "without --token-file"},
		{"etcd endpoints", 0, func(b *bundle) {
			bw(b).Args = setArg(bw(b).Args, "etcd-endpoints", "http://etcd-0.etcd.bulwark.svc:2379,http://etcd-1.etcd.bulwark.svc:2379")
		}, "want the members"},
		{"etcd members", 0, func(b *bundle) { r := int32(5); find[*appsv1.StatefulSet](t, b, "etcd").Spec.Replicas = &r }, "--initial-cluster="},
		{"etcd governing service", 0, func(b *bundle) { find[*appsv1.StatefulSet](t, b, "etcd").Spec.ServiceName = "etcd-peers" }, `serviceName "etcd-peers" is not among the Services`},
		{"etcd service not headless", 0, func(b *bundle) { find[*corev1.Service](t, b, "etcd").Spec.ClusterIP = "" }, "is not headless"},
		{"etcd not-ready addresses", 0, func(b *bundle) { find[*corev1.Service](t, b, "etcd").Spec.PublishNotReadyAddresses = false }, "publishNotReadyAddresses"},
		{"etcd advertised peer URL", 0, func(b *bundle) {
			etcd(b).Args = setArg(etcd(b).Args, "initial-advertise-peer-urls", "http://$(POD_NAME).etcd:2380")
		}, "--initial-advertise-peer-urls="},
		{"etcd listen port", 0, func(b *bundle) { etcd(b).Args = setArg(etcd(b).Args, "listen-client-urls", "http://0.0.0.0:2479") }, "--listen-client-urls=http://0.0.0.0:2479 is not on the container port"},
		{"etcd data not persistent", 0, func(b *bundle) { etcd(b).Args = setArg(etcd(b).Args, "data-dir", "/tmp/etcd") }, "--data-dir /tmp/etcd is under no volume mount"},
		{"etcd ordered start", 0, func(b *bundle) { find[*appsv1.StatefulSet](t, b, "etcd").Spec.PodManagementPolicy = "OrderedReady" }, "members must start together"},
		{"external etcd names a missing Service", 1, func(b *bundle) {
			bw(b).Args = setArg(bw(b).Args, "etcd-endpoints", "https://etcd-0.etcd.bulwark.svc:2379")
		}, "there is no etcd StatefulSet"},
		{"envoy bootstrap address", 2, func(b *bundle) {
			cm := find[*corev1.ConfigMap](t, b, "checkout-envoy")
			cm.Data["envoy.yaml"] = strings.Replace(cm.Data["envoy.yaml"], "port_value: 18000", "port_value: 18001", 1)
		}, "points at bulwark-xds.bulwark.svc.cluster.local:18001, not at Bulwark's xDS Service"},
		{"envoy bootstrap invalid", 2, func(b *bundle) {
			cm := find[*corev1.ConfigMap](t, b, "checkout-envoy")
			cm.Data["envoy.yaml"] = strings.Replace(cm.Data["envoy.yaml"], "connect_timeout: 1s", "connect_timeout: 1s\n      conect_timeout: 1s", 1)
		}, "bootstrap /etc/envoy/envoy.yaml:"},
		{"envoy sni", 2, func(b *bundle) {
			cm := find[*corev1.ConfigMap](t, b, "checkout-envoy")
			cm.Data["envoy.yaml"] = strings.Replace(cm.Data["envoy.yaml"], "sni: bulwark-xds.bulwark.svc.cluster.local", "sni: bulwark", 1)
		}, `sni "bulwark"`},
		{"envoy CA not mounted", 2, func(b *bundle) { envoy(b).VolumeMounts = envoy(b).VolumeMounts[:1] }, "trusted_ca /etc/bulwark-ca/ca.crt is under no volume mount"},
		{"envoy config path", 2, func(b *bundle) { envoy(b).Args[1] = "/etc/envoy/bootstrap.yaml" }, `has no key "bootstrap.yaml"`},
		{"envoy node id", 2, func(b *bundle) { envoy(b).Args[5] = "checkout" }, "every sidecar would have the same node.id"},
		{"grpc server uri", 2, func(b *bundle) {
			cm := find[*corev1.ConfigMap](t, b, "grpc-xds-bootstrap")
			cm.Data["bootstrap.json"] = strings.Replace(cm.Data["bootstrap.json"], "bulwark-xds.bulwark.svc.cluster.local", "bulwark-xds.bulwark", 1)
		}, "points at bulwark-xds.bulwark:18000"},
		{"grpc bootstrap invalid", 2, func(b *bundle) {
			cm := find[*corev1.ConfigMap](t, b, "grpc-xds-bootstrap")
			cm.Data["bootstrap.json"] = strings.Replace(cm.Data["bootstrap.json"], `"type": "tls"`, `"type": "mtls"`, 1)
		}, "gRPC refuses it"},
		{"grpc bootstrap without servers", 2, func(b *bundle) {
			cm := find[*corev1.ConfigMap](t, b, "grpc-xds-bootstrap")
			cm.Data["bootstrap.json"] = strings.Replace(cm.Data["bootstrap.json"], `"xds_servers"`, `"xds_server"`, 1)
		}, "required field `xds_servers` not found"},
		{"grpc plaintext to TLS", 2, func(b *bundle) {
			cm := find[*corev1.ConfigMap](t, b, "grpc-xds-bootstrap")
			cm.Data["bootstrap.json"] = strings.Replace(cm.Data["bootstrap.json"], `{"type": "tls", "config": {"ca_certificate_file": "/etc/bulwark-ca/ca.crt"}}`, `{"type": "insecure"}`, 1)
		}, `channel_creds "insecure"`},
		{"grpc node id", 2, func(b *bundle) {
			cm := find[*corev1.ConfigMap](t, b, "grpc-xds-bootstrap")
			cm.Data["bootstrap.json"] = strings.Replace(cm.Data["bootstrap.json"], "@POD_NAME@", "checkout-grpc", 1)
		}, "node.id is the same for every pod"},
		{"grpc bootstrap path", 2, func(b *bundle) {
			find[*appsv1.Deployment](t, b, "checkout-grpc").Spec.Template.Spec.Containers[0].Env[0].Value = "/etc/grpc-xds/xds.json"
		}, "is neither a ConfigMap key nor written from one"},
		{"service without selector", 0, func(b *bundle) { find[*corev1.Service](t, b, "bulwark-admin").Spec.Selector = nil }, "Service/bulwark-admin: has no selector"},
		{"pdb without a budget", 0, func(b *bundle) { find[*policyv1.PodDisruptionBudget](t, b, "bulwark").Spec.MaxUnavailable = nil }, "neither maxUnavailable nor minAvailable"},
		{"pdb minAvailable of all", 0, func(b *bundle) {
			p := find[*policyv1.PodDisruptionBudget](t, b, "bulwark")
			v := intstr.FromInt32(3)
			p.Spec.MaxUnavailable, p.Spec.MinAvailable = nil, &v
		}, "minAvailable 3 of 3 replicas"},
		{"unmounted volume", 0, func(b *bundle) { bw(b).VolumeMounts = bw(b).VolumeMounts[1:] }, `volume "tokens" is mounted by no container`},
		{"unmounted claim", 0, func(b *bundle) { find[*appsv1.StatefulSet](t, b, "etcd").Spec.VolumeClaimTemplates[0].Name = "store" }, `volumeClaimTemplate "store" is mounted by no container`},
		{"secret item key", 0, func(b *bundle) {
			find[*appsv1.Deployment](t, b, "bulwark").Spec.Template.Spec.Volumes[1].Secret.Items = []corev1.KeyToPath{{Key: "cert.pem", Path: "tls.crt"}}
		}, `Secret "bulwark-tls" has no key "cert.pem"`},
		{"entrypoint replaced", 0, func(b *bundle) { bw(b).Command = []string{"/bulwark"} }, "replaces the image's bulwark entrypoint"},
		{"tls key missing", 0, func(b *bundle) { bw(b).Args = setArg(bw(b).Args, "tls-key", "") }, "--tls-cert and --tls-key go together"},
		{"no readiness probe", 0, func(b *bundle) { bw(b).ReadinessProbe = nil }, "no HTTP readinessProbe"},
		{"flag and value apart", 0, func(b *bundle) { bw(b).Args = append(bw(b).Args, "--log-level", "debug") }, `argument "debug": write flags as --name=value`},
		{"no etcd endpoints", 0, func(b *bundle) { bw(b).Args = setArg(bw(b).Args, "etcd-endpoints", "") }, "no --etcd-endpoints"},
		{"even members", 0, func(b *bundle) { r := int32(4); find[*appsv1.StatefulSet](t, b, "etcd").Spec.Replicas = &r }, "4 members: run an odd number"},
		{"etcd member name", 0, func(b *bundle) { etcd(b).Args = setArg(etcd(b).Args, "name", "etcd") }, "--name=etcd for pod etcd-0"},
		{"etcd advertised client URL", 0, func(b *bundle) {
			etcd(b).Args = setArg(etcd(b).Args, "advertise-client-urls", "http://$(POD_NAME):2379")
		}, "--advertise-client-urls="},
		{"etcd service selector", 0, func(b *bundle) { find[*corev1.Service](t, b, "etcd").Spec.Selector = map[string]string{"app": "etcd"} }, "Service etcd does not select the members"},
		{"etcd data on an emptyDir", 0, func(b *bundle) {
			spec := &find[*appsv1.StatefulSet](t, b, "etcd").Spec.Template.Spec
			spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
			etcd(b).VolumeMounts = append(etcd(b).VolumeMounts, corev1.VolumeMount{Name: "scratch", MountPath: "/scratch"})
			etcd(b).Args = setArg(etcd(b).Args, "data-dir", "/scratch/data")
		}, "is on volume scratch, not on a persistent volume claim"},
		{"envoy TLS to a plaintext port", 0, func(b *bundle) {
			bw(b).Args = setArg(setArg(bw(b).Args, "tls-cert", ""), "tls-key", "")
		}, "TLS to an xDS port that serves plaintext"},
		{"envoy server name not verified", 2, func(b *bundle) {
			cm := find[*corev1.ConfigMap](t, b, "checkout-envoy")
			cm.Data["envoy.yaml"] = strings.Replace(cm.Data["envoy.yaml"], "exact: bulwark-xds.bulwark.svc.cluster.local", "exact: bulwark", 1)
		}, "the server certificate's name bulwark-xds.bulwark.svc.cluster.local is not verified"},
		{"envoy ADS cluster", 2, func(b *bundle) {
			cm := find[*corev1.ConfigMap](t, b, "checkout-envoy")
			cm.Data["envoy.yaml"] = strings.Replace(cm.Data["envoy.yaml"], "cluster_name: bulwark_xds", "cluster_name: xds", 1)
		}, "no static cluster xds for ADS"},
		{"envoy bootstrap from a generated ConfigMap", 2, func(b *bundle) { envoy(b).Args[1] = "/etc/bulwark-ca/ca.crt" }, "ConfigMap bulwark-ca is generated, not a manifest"},
		{"grpc node id not substituted", 2, func(b *bundle) {
			ic := &find[*appsv1.Deployment](t, b, "checkout-grpc").Spec.Template.Spec.InitContainers[0]
			ic.Command[2] = strings.Replace(ic.Command[2], "$POD_NAME", "checkout", 1)
		}, "does not put the pod's name in place of @POD_NAME@"},
		{"grpc CA not mounted", 2, func(b *bundle) {
			ct := &find[*appsv1.Deployment](t, b, "checkout-grpc").Spec.Template.Spec.Containers[0]
			ct.VolumeMounts = ct.VolumeMounts[:1]
		}, "ca_certificate_file /etc/bulwark-ca/ca.crt is under no volume mount"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			all := loadAll(t)
			tc.break_(all[tc.bundle])
			requireProblem(t, problems(t, all), tc.want)
		})
	}
	// The probes' paths are checked against the admin API's routes, so a
	// renamed route breaks the manifests.
	renamed := problems(t, loadAll(t), func(c *checker) { c.routes = strings.ReplaceAll(c.routes, "/health/live", "/livez") })
	requireProblem(t, renamed, "livenessProbe path /health/live is no route of the admin API")
}

func requireProblem(t *testing.T, got []string, want string) {
	t.Helper()
	for _, p := range got {
		if strings.Contains(p, want) {
			return
		}
	}
	t.Fatalf("no problem reported containing %q; got %q", want, got)
}
