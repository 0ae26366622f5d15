// Package kubernetes holds the Kubernetes manifests of Bulwark (kustomizations
// for the control plane, its etcd, an overlay for an existing etcd cluster and
// an application example); its test decodes them strictly with the official
// API types and checks how they are wired together. It has no code of its
// own and imports none of Bulwark's packages: it builds cmd/bulwark to parse
// the containers' args, and reads the admin API's route table from source.
package kubernetes

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's Kustomization these manifests
// use, decoded strictly: a field kustomize knows but this struct does not
// is an error, so the test never silently ignores part of the file.
type kustomization struct {
	APIVersion         string      `json:"apiVersion"`
	Kind               string      `json:"kind"`
	Namespace          string      `json:"namespace,omitempty"`
	Resources          []string    `json:"resources,omitempty"`
	SecretGenerator    []generator `json:"secretGenerator,omitempty"`
	ConfigMapGenerator []generator `json:"configMapGenerator,omitempty"`
	Patches            []struct {
		Path string `json:"path"`
	} `json:"patches,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
	} `json:"images,omitempty"`
}

type generator struct {
	Name  string   `json:"name"`
	Type  string   `json:"type,omitempty"`
	Files []string `json:"files"`
}

// object is one decoded manifest.
type object struct {
	file string
	obj  runtime.Object
}

func (o object) meta() metav1.Object { return o.obj.(metav1.Object) }

func (o object) String() string {
	return fmt.Sprintf("%s: %s/%s", o.file, o.obj.GetObjectKind().GroupVersionKind().Kind, o.meta().GetName())
}

// bundle is what `kubectl apply -k DIR` would create: the objects of the
// resources (those of a resource directory included), the generated Secrets
// and ConfigMaps (name → keys), with the kustomization's namespace.
type bundle struct {
	dir       string
	namespace string
	objects   []object
	secrets   map[string][]string
	configMap map[string][]string
	// files are the manifest and patch files read, kustomization.yaml files included.
	files []string
}

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strict decodes YAML into the registered type its apiVersion and kind name;
// unknown and duplicate fields are errors.
var strict = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
	json.SerializerOptions{Yaml: true, Strict: true})

// decodeFile decodes every document of a manifest file.
func decodeFile(path string) ([]object, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []object
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i, err)
		}
		if js, err := yaml.YAMLToJSON(doc); err == nil && string(js) == "null" {
			continue // only comments
		}
		obj, _, err := strict.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, i, err)
		}
		out = append(out, object{file: path, obj: obj})
	}
}

// loadBundle reads a kustomization directory the way kustomize would for
// these manifests: resources (files or directories), generators, patches
// (strategic merge patches, applied with apimachinery's implementation) and
// the namespace.
func loadBundle(dir string) (*bundle, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s/kustomization.yaml: apiVersion/kind %s/%s", dir, k.APIVersion, k.Kind)
	}
	b := &bundle{dir: dir, namespace: k.Namespace, secrets: map[string][]string{}, configMap: map[string][]string{},
		files: []string{filepath.Join(dir, "kustomization.yaml")}}
	for _, res := range k.Resources {
		p := filepath.Join(dir, res)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s/kustomization.yaml: resources: %w", dir, err)
		}
		if err := kustomizeAllows(dir, res, st.IsDir()); err != nil {
			return nil, err
		}
		if st.IsDir() {
			base, err := loadBundle(p)
			if err != nil {
				return nil, err
			}
			b.objects = append(b.objects, base.objects...)
			b.files = append(b.files, base.files...)
			for n, keys := range base.secrets {
				b.secrets[n] = keys
			}
			for n, keys := range base.configMap {
				b.configMap[n] = keys
			}
			if b.namespace == "" {
				b.namespace = base.namespace
			}
			continue
		}
		objs, err := decodeFile(p)
		if err != nil {
			return nil, err
		}
		b.objects = append(b.objects, objs...)
		b.files = append(b.files, p)
	}
	for _, g := range append(slices.Clone(k.SecretGenerator), k.ConfigMapGenerator...) {
		for _, f := range g.Files {
			_, file, found := strings.Cut(f, "=")
			if !found {
				file = f
			}
			if err := kustomizeAllows(dir, file, false); err != nil {
				return nil, err
			}
		}
	}
	for _, g := range k.SecretGenerator {
		b.secrets[g.Name] = generatedKeys(g)
	}
	for _, g := range k.ConfigMapGenerator {
		b.configMap[g.Name] = generatedKeys(g)
	}
	for _, p := range k.Patches {
		if err := kustomizeAllows(dir, p.Path, false); err != nil {
			return nil, err
		}
		if err := b.patch(filepath.Join(dir, p.Path)); err != nil {
			return nil, err
		}
		b.files = append(b.files, filepath.Join(dir, p.Path))
	}
	for _, o := range b.objects {
		if s, ok := o.obj.(*corev1.Secret); ok {
			b.secrets[s.Name] = append(keysOf(s.Data), keysOf(s.StringData)...)
		}
		if c, ok := o.obj.(*corev1.ConfigMap); ok {
			b.configMap[c.Name] = keysOf(c.Data)
		}
	}
	return b, nil
}

// kustomizeAllows applies kustomize's loading rules to a path of the
// kustomization in dir: a file must be inside dir (the load restrictor), and
// a directory must not contain dir (kustomize refuses that as a cycle).
func kustomizeAllows(dir, rel string, isDir bool) error {
	root, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	p, err := filepath.Abs(filepath.Join(dir, rel))
	if err != nil {
		return err
	}
	inside := strings.HasPrefix(p, root+string(filepath.Separator))
	if isDir && (p == root || strings.HasPrefix(root, p+string(filepath.Separator))) {
		return fmt.Errorf("%s/kustomization.yaml: %s contains this kustomization: kustomize refuses the cycle", dir, rel)
	}
	if !isDir && !inside {
		return fmt.Errorf("%s/kustomization.yaml: %s is outside the kustomization's directory: kustomize refuses to load it", dir, rel)
	}
	return nil
}

// generatedKeys lists the keys of a generated Secret or ConfigMap ("key=path"
// or a path whose base name is the key).
func generatedKeys(g generator) []string {
	var keys []string
	for _, f := range g.Files {
		key, _, found := strings.Cut(f, "=")
		if !found {
			key = filepath.Base(f)
		}
		keys = append(keys, key)
	}
	return keys
}

func keysOf[V any](m map[string]V) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// patch applies one patch file to the objects it names (kind and name).
func (b *bundle) patch(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var head struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(js, &head); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for i, o := range b.objects {
		if o.obj.GetObjectKind().GroupVersionKind().Kind != head.Kind || o.meta().GetName() != head.Metadata.Name {
			continue
		}
		// The patch alone must be a valid (partial) object of that kind.
		if _, _, err := strict.Decode(raw, nil, nil); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		orig, err := runtime.Encode(strict, o.obj)
		if err != nil {
			return err
		}
		if orig, err = yaml.YAMLToJSON(orig); err != nil {
			return err
		}
		typed, err := scheme.New(o.obj.GetObjectKind().GroupVersionKind())
		if err != nil {
			return err
		}
		merged, err := strategicpatch.StrategicMergePatch(orig, js, typed)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		obj, _, err := strict.Decode(merged, nil, nil)
		if err != nil {
			return fmt.Errorf("%s: after patching: %w", path, err)
		}
		b.objects[i] = object{file: path, obj: obj}
		return nil
	}
	return fmt.Errorf("%s: patches %s/%s, which is not among the resources", path, head.Kind, head.Metadata.Name)
}
