package apply

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/falsesystems/alumiini/pkg/git"
	"github.com/falsesystems/alumiini/pkg/manifest"
	"github.com/falsesystems/alumiini/test/localcluster"
)

// These tests run against a real kube-apiserver and etcd (test/localcluster).
var restConfig *rest.Config

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "alumiini-apply-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		cluster, err := localcluster.StartForTest(dir, true)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cluster.Stop()
		if restConfig, err = cluster.RESTConfig(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		restConfig.QPS, restConfig.Burst = 500, 1000
		return m.Run()
	}())
}

func newApplier(t *testing.T) *Applier {
	t.Helper()
	return newApplierAs(t, restConfig)
}

// newApplierAs acts as config's identity, with discovery as the admin.
func newApplierAs(t *testing.T, config *rest.Config) *Applier {
	t.Helper()
	disco := discovery.NewDiscoveryClientForConfigOrDie(restConfig)
	a, err := New(config, restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco)))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func render(t *testing.T, kv ...string) []manifest.Object {
	t.Helper()
	var files []git.File
	for i := 0; i < len(kv); i += 2 {
		files = append(files, git.File{Path: kv[i], Data: []byte(kv[i+1])})
	}
	objects, err := manifest.Render(context.Background(), "", manifest.FilesReader(files))
	if err != nil {
		t.Fatal(err)
	}
	return objects
}

func namespace(t *testing.T, a *Applier) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	objects := render(t, "ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+name+"\n")
	if _, err := a.Apply(context.Background(), Owner{Namespace: "default", Name: "setup-" + name}, objects, Options{}); err != nil {
		t.Fatal(err)
	}
	return name
}

var configMaps = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

func TestApplyCreatesThenLeavesUnchangedObjectsAlone(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	owner := Owner{Namespace: "default", Name: "demo"}
	objects := render(t,
		"cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n",
		"sa.yaml", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: runner\n")
	ctx := context.Background()
	result, err := a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	if result.Created != 2 || len(result.Inventory) != 2 {
		t.Fatalf("first apply: %+v", result)
	}
	live, err := a.Client.Resource(configMaps).Namespace(ns).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if live.GetLabels()[LabelName] != "demo" || live.GetAnnotations()[AnnotationOwner] != "default/demo" {
		t.Errorf("applied object lacks the owner label and annotation: %v %v", live.GetLabels(), live.GetAnnotations())
	}

	// The same commit again writes nothing: the resourceVersion stays.
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Previous: result.Inventory})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := a.Client.Resource(configMaps).Namespace(ns).Get(ctx, "settings", metav1.GetOptions{})
	if result.Unchanged != 2 || result.Created+result.Configured != 0 || again.GetResourceVersion() != live.GetResourceVersion() {
		t.Errorf("a no-op apply: %+v, resourceVersion %s → %s", result, live.GetResourceVersion(), again.GetResourceVersion())
	}

	// A changed object is configured.
	changed := render(t,
		"cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"2\"\n",
		"sa.yaml", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: runner\n")
	result, err = a.Apply(ctx, owner, changed, Options{DefaultNamespace: ns, Previous: result.Inventory})
	if err != nil || result.Configured != 1 || result.Unchanged != 1 {
		t.Errorf("a changed object: %+v %v", result, err)
	}
}

func TestAnotherGitRepositorysObjectIsNeverTakenOver(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	objects := render(t, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  owner: first\n")
	if _, err := a.Apply(ctx, Owner{Namespace: "team-a", Name: "first"}, objects, Options{DefaultNamespace: ns}); err != nil {
		t.Fatal(err)
	}
	hijack := render(t, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  owner: second\n")
	for _, adopt := range []bool{false, true} {
		_, err := a.Apply(ctx, Owner{Namespace: "team-b", Name: "second"}, hijack, Options{DefaultNamespace: ns, Adopt: adopt})
		var aerr *Error
		if !errors.As(err, &aerr) || aerr.Reason != ReasonOwnedByAnother || !strings.Contains(err.Error(), "team-a/first") ||
			!strings.Contains(err.Error(), "team-b/second") {
			t.Fatalf("adopt=%v: got %v, want OwnedByAnother naming both GitRepositories", adopt, err)
		}
	}
	live, _ := a.Client.Resource(configMaps).Namespace(ns).Get(ctx, "shared", metav1.GetOptions{})
	if live.GetLabels()[LabelName] != "first" || live.Object["data"].(map[string]interface{})["owner"] != "first" {
		t.Errorf("the first GitRepository's object was changed: %v", live.Object)
	}
}

func TestAnUnmanagedObjectIsAdoptedOnlyWhenAsked(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	owner := Owner{Namespace: "default", Name: "adopter"}
	handMade := &unstructured.Unstructured{Object: map[string]interface{}{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]interface{}{"name": "hand-made", "namespace": ns}, "data": map[string]interface{}{"a": "by hand"}}}
	if _, err := a.Client.Resource(configMaps).Namespace(ns).Create(ctx, handMade, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	objects := render(t, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hand-made\ndata:\n  a: from git\n")
	_, err := a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns})
	var aerr *Error
	if !errors.As(err, &aerr) || aerr.Reason != ReasonAdoptionRequired || !strings.Contains(err.Error(), "spec.adopt") {
		t.Fatalf("got %v, want AdoptionRequired naming spec.adopt", err)
	}
	live, _ := a.Client.Resource(configMaps).Namespace(ns).Get(ctx, "hand-made", metav1.GetOptions{})
	if live.GetLabels()[LabelName] != "" || live.Object["data"].(map[string]interface{})["a"] != "by hand" {
		t.Fatalf("refused, yet the object was changed: %v", live.Object)
	}

	result, err := a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Adopt: true})
	if err != nil || result.Configured != 1 {
		t.Fatalf("adopting: %+v %v", result, err)
	}
	live, _ = a.Client.Resource(configMaps).Namespace(ns).Get(ctx, "hand-made", metav1.GetOptions{})
	if live.GetLabels()[LabelName] != "adopter" || live.GetAnnotations()[AnnotationAdopted] != "true" {
		t.Fatalf("adopted object lacks our label or the adopted mark: %v %v", live.GetLabels(), live.GetAnnotations())
	}
	// Once adopted it is ours: the next sync keeps the mark, and leaving the
	// repository prunes it.
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Previous: result.Inventory})
	if err != nil || result.Unchanged != 1 {
		t.Fatalf("the next sync: %+v %v", result, err)
	}
	if _, err := a.Apply(ctx, owner, nil, Options{DefaultNamespace: ns, Prune: true, Previous: result.Inventory}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.Resource(configMaps).Namespace(ns).Get(ctx, "hand-made", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("an adopted object that left the repository was not pruned: %v", err)
	}
}

func TestAnAdoptedNamespaceIsNeverPruned(t *testing.T) {
	a := newApplier(t)
	ctx := context.Background()
	namespaces := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	existing, created := "adopted-namespace-old", "adopted-namespace-new"
	ns := &unstructured.Unstructured{Object: map[string]interface{}{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]interface{}{"name": existing}}}
	if _, err := a.Client.Resource(namespaces).Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	owner := Owner{Namespace: "default", Name: "namespaces"}
	result, err := a.Apply(ctx, owner, render(t,
		"a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+existing+"\n",
		"b.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+created+"\n"), Options{Adopt: true})
	if err != nil || result.Created != 1 || result.Configured != 1 {
		t.Fatalf("%+v %v", result, err)
	}
	result, err = a.Apply(ctx, owner, nil, Options{Prune: true, Previous: result.Inventory})
	if err != nil || result.Pruned != 1 {
		t.Fatalf("pruning: %+v %v", result, err)
	}
	live, err := a.Client.Resource(namespaces).Get(ctx, existing, metav1.GetOptions{})
	if err != nil || live.GetDeletionTimestamp() != nil {
		t.Fatalf("the adopted Namespace was deleted: %v %v", live, err)
	}
	if live.GetLabels()[LabelName] != "" || live.GetAnnotations()[AnnotationAdopted] != "" {
		t.Errorf("the Namespace it let go still carries our marks, so no one else could adopt it: %v %v",
			live.GetLabels(), live.GetAnnotations())
	}
	if _, err := a.Apply(ctx, Owner{Namespace: "default", Name: "next"}, render(t,
		"a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+existing+"\n"), Options{Adopt: true}); err != nil {
		t.Errorf("another GitRepository adopting the released Namespace: %v", err)
	}
	live, err = a.Client.Resource(namespaces).Get(ctx, created, metav1.GetOptions{})
	if err == nil && live.GetDeletionTimestamp() == nil {
		t.Errorf("the Namespace this GitRepository created was not pruned")
	}
}

func TestOneRefusedObjectMeansNothingIsApplied(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	objects := render(t,
		"a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: good\n",
		"b.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: 99999\n")
	_, err := a.Apply(context.Background(), Owner{Namespace: "default", Name: "demo"}, objects, Options{DefaultNamespace: ns})
	var aerr *Error
	if !errors.As(err, &aerr) || aerr.Reason != ReasonDryRunFailed || !strings.Contains(err.Error(), "Service "+ns+"/bad") ||
		!strings.Contains(err.Error(), "b.yaml") {
		t.Fatalf("got %v, want a dry-run failure naming the Service and its file", err)
	}
	if _, err := a.Client.Resource(configMaps).Namespace(ns).Get(context.Background(), "good", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the valid object was applied although another was refused: %v", err)
	}
}

func TestUnknownKindIsNamed(t *testing.T) {
	a := newApplier(t)
	objects := render(t, "x.yaml", "apiVersion: nowhere.example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n")
	_, err := a.Apply(context.Background(), Owner{Namespace: "default", Name: "demo"}, objects, Options{DefaultNamespace: "default"})
	if err == nil || !strings.Contains(err.Error(), "is its CRD installed") {
		t.Fatalf("got %v", err)
	}
}

func TestCRDAndItsResourcesInOneCommit(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	objects := render(t,
		"crd.yaml", `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
`,
		"widget.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: 3\n")
	result, err := a.Apply(context.Background(), Owner{Namespace: "default", Name: "crd"}, objects, Options{DefaultNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	if result.Created != 2 {
		t.Errorf("CRD and widget: %+v", result)
	}
	widgets := schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	if _, err := a.Client.Resource(widgets).Namespace(ns).Get(context.Background(), "w", metav1.GetOptions{}); err != nil {
		t.Errorf("the widget: %v", err)
	}
}

func TestPruneDeletesOnlyWhatIsStillOurs(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	owner := Owner{Namespace: "default", Name: "pruner"}
	ctx := context.Background()
	first, err := a.Apply(ctx, owner, render(t,
		"a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stays\n",
		"b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: goes\n",
		"c.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: adopted\n"), Options{DefaultNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	// Someone else takes "adopted" over by changing its label.
	cm, _ := a.Client.Resource(configMaps).Namespace(ns).Get(ctx, "adopted", metav1.GetOptions{})
	labels := cm.GetLabels()
	labels[LabelName] = "someone-else"
	cm.SetLabels(labels)
	if _, err := a.Client.Resource(configMaps).Namespace(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	result, err := a.Apply(ctx, owner, render(t, "a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stays\n"),
		Options{DefaultNamespace: ns, Prune: true, Previous: first.Inventory})
	if err != nil {
		t.Fatal(err)
	}
	if result.Pruned != 1 {
		t.Errorf("pruned %d, want 1", result.Pruned)
	}
	for name, want := range map[string]bool{"stays": true, "goes": false, "adopted": true} {
		_, err := a.Client.Resource(configMaps).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if exists := err == nil; exists != want {
			t.Errorf("%s exists=%v, want %v", name, exists, want)
		}
	}
}

func TestImmutableFieldIsReportedAndForceRecreates(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	owner := Owner{Namespace: "default", Name: "immutable"}
	ctx := context.Background()
	secret := func(typ string) []manifest.Object {
		return render(t, "s.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ntype: "+typ+"\nstringData:\n  a: b\n")
	}
	if _, err := a.Apply(ctx, owner, secret("Opaque"), Options{DefaultNamespace: ns}); err != nil {
		t.Fatal(err)
	}
	_, err := a.Apply(ctx, owner, secret("example.com/other"), Options{DefaultNamespace: ns})
	var aerr *Error
	if !errors.As(err, &aerr) || aerr.Reason != ReasonImmutable || !strings.Contains(err.Error(), "Secret "+ns+"/s") {
		t.Fatalf("got %v, want an immutable-field error naming the Secret", err)
	}
	result, err := a.Apply(ctx, owner, secret("example.com/other"), Options{DefaultNamespace: ns, Force: true})
	if err != nil || result.Configured != 1 {
		t.Fatalf("forced: %+v %v", result, err)
	}
	live, _ := a.Client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "secrets"}).Namespace(ns).Get(ctx, "s", metav1.GetOptions{})
	if typ, _, _ := unstructuredString(live.Object, "type"); typ != "example.com/other" {
		t.Errorf("after force the Secret has type %q", typ)
	}
}

func unstructuredString(obj map[string]interface{}, field string) (string, bool, error) {
	v, ok := obj[field].(string)
	return v, ok, nil
}

func crd(plural, singular, kind string) string {
	return `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ` + plural + `.conflict.example.com
spec:
  group: conflict.example.com
  names: {kind: ` + kind + `, plural: ` + plural + `, singular: ` + singular + `}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`
}

// TestACRDThatIsNeverEstablishedIsNamed: a CRD whose names clash with
// another's is stored but never Established; its resources in the same
// commit are not applied and the failure names the CRD.
func TestACRDThatIsNeverEstablishedIsNamed(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	if _, err := a.Apply(ctx, Owner{Namespace: "default", Name: "widgets"}, render(t, "crd.yaml", crd("widgets", "widget", "Widget")),
		Options{DefaultNamespace: ns}); err != nil {
		t.Fatal(err)
	}
	a.CRDTimeout = 3 * time.Second
	clashing := render(t, "crd.yaml", crd("gadgets", "widget", "Gadget"),
		"gadget.yaml", "apiVersion: conflict.example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n")
	_, err := a.Apply(ctx, Owner{Namespace: "default", Name: "gadgets"}, clashing, Options{DefaultNamespace: ns})
	var aerr *Error
	if !errors.As(err, &aerr) || aerr.Reason != ReasonCRDNotReady || !strings.Contains(err.Error(), "gadgets.conflict.example.com") {
		t.Fatalf("got %v, want %s naming the CRD", err, ReasonCRDNotReady)
	}
}

// TestAWriteRefusedAfterItsDryRunIsNamed: a ResourceQuota checks each
// dry-run alone, so two Services fit one left in the quota until they are
// written; the second write fails with ApplyFailed naming it and the quota.
func TestAWriteRefusedAfterItsDryRunIsNamed(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	quotas := schema.GroupVersionResource{Version: "v1", Resource: "resourcequotas"}
	quota := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ResourceQuota",
		"metadata": map[string]any{"name": "one-service"}, "spec": map[string]any{"hard": map[string]any{"services": "1"}}}}
	if _, err := a.Client.Resource(quotas).Namespace(ns).Create(ctx, quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Admission refuses everything it counts until the quota controller
	// has written the quota's usage.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		live, err := a.Client.Resource(quotas).Namespace(ns).Get(ctx, "one-service", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		_, found, _ := unstructured.NestedMap(live.Object, "status", "used")
		return found, nil
	}); err != nil {
		t.Fatal("the quota controller never counted the quota's usage")
	}
	service := func(name string) string {
		return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\nspec:\n  ports:\n  - port: 80\n"
	}
	objects := render(t, "a.yaml", service("a"), "b.yaml", service("b"))
	result, err := a.Apply(ctx, Owner{Namespace: "default", Name: "quota"}, objects, Options{DefaultNamespace: ns})
	var aerr *Error
	if !errors.As(err, &aerr) || aerr.Reason != ReasonApplyFailed || !strings.Contains(err.Error(), "exceeded quota") ||
		!strings.Contains(err.Error(), "Service "+ns+"/") {
		t.Fatalf("got %v (%+v), want %s naming a Service and the quota", err, result, ReasonApplyFailed)
	}
}

// countingGets counts the GETs a client makes.
type countingGets struct {
	next http.RoundTripper
	gets atomic.Int32
}

func (c *countingGets) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet {
		c.gets.Add(1)
	}
	return c.next.RoundTrip(r)
}

// TestANewObjectIsNotRead: objects the last sync did not apply are dry-run
// first; those the dry-run would create are not read at all, and are still
// created; one that exists is read and claimed as before.
func TestANewObjectIsNotRead(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	counter := &countingGets{}
	config := rest.CopyConfig(restConfig)
	config.Wrap(func(rt http.RoundTripper) http.RoundTripper { counter.next = rt; return counter })
	a.Client = dynamic.NewForConfigOrDie(config)
	ctx := context.Background()
	objects := render(t,
		"a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
		"b.yaml", "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: b\n")
	result, err := a.Apply(ctx, Owner{Namespace: "default", Name: "fresh"}, objects, Options{DefaultNamespace: ns})
	if err != nil || result.Created != 2 {
		t.Fatalf("applying two new objects: %+v %v", result, err)
	}
	if n := counter.gets.Load(); n != 0 {
		t.Errorf("two new objects cost %d reads", n)
	}
	if _, err := a.Client.Resource(configMaps).Namespace(ns).Get(ctx, "a", metav1.GetOptions{}); err != nil {
		t.Errorf("the new ConfigMap: %v", err)
	}
	// Another GitRepository's object is not new to the dry-run: it is
	// read, and refused.
	_, err = a.Apply(ctx, Owner{Namespace: "default", Name: "other"}, objects[:1], Options{DefaultNamespace: ns})
	var aerr *Error
	if !errors.As(err, &aerr) || aerr.Reason != ReasonOwnedByAnother {
		t.Errorf("another GitRepository's object: %v", err)
	}
}

// TestAWriteAnswersMetadataUnlessObservedWhole: a write's answer reaches
// Observe as metadata alone, managedFields included (what drift detection
// sums), unless ObserveWhole asks for the whole object (a rolloutRef's
// status is read from it).
func TestAWriteAnswersMetadataUnlessObservedWhole(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	objects := render(t,
		"a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n",
		"b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  k: v\n")
	var mu sync.Mutex
	seen := map[string]metav1.Object{}
	opts := Options{DefaultNamespace: ns,
		ObserveWhole: func(e Entry) bool { return e.Name == "b" },
		Observe: func(e Entry, obj metav1.Object) {
			mu.Lock()
			defer mu.Unlock()
			seen[e.Name] = obj
		}}
	if _, err := a.Apply(context.Background(), Owner{Namespace: "default", Name: "answers"}, objects, opts); err != nil {
		t.Fatal(err)
	}
	meta, ok := seen["a"].(*metav1.PartialObjectMetadata)
	if !ok {
		t.Fatalf("the answer for a: %T, want its metadata alone", seen["a"])
	}
	if meta.ResourceVersion == "" || len(meta.ManagedFields) == 0 || meta.ManagedFields[0].Manager != FieldManager {
		t.Errorf("a's metadata lacks its resourceVersion or our managedFields: %+v", meta.ObjectMeta)
	}
	whole, ok := seen["b"].(*unstructured.Unstructured)
	if !ok {
		t.Fatalf("the answer for b: %T, want the whole object", seen["b"])
	}
	if v, _, _ := unstructured.NestedString(whole.Object, "data", "k"); v != "v" {
		t.Errorf("b's whole answer holds data.k = %q, want v", v)
	}
}

// TestBeforeWritesSeesNothingWrittenAndCanRefuseTheWrites: a stopping
// controller refuses an apply's writes only before the first goes out, a
// Namespace's included (written first).
func TestBeforeWritesSeesNothingWrittenAndCanRefuseTheWrites(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	extra := ns + "-extra"
	objects := render(t,
		"a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\n",
		"b.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+extra+"\n")
	namespaces := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	nothingWritten := func(when string) {
		if _, err := a.Client.Resource(configMaps).Namespace(ns).Get(context.Background(), "first", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s the ConfigMap was written: %v", when, err)
		}
		if _, err := a.Client.Resource(namespaces).Get(context.Background(), extra, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s the Namespace was written: %v", when, err)
		}
	}
	refused := errors.New("stopping")
	calls := 0
	_, err := a.Apply(context.Background(), Owner{Namespace: "default", Name: "demo"}, objects, Options{DefaultNamespace: ns,
		BeforeWrites: func() error {
			calls++
			nothingWritten("before BeforeWrites")
			return refused
		}})
	if !errors.Is(err, refused) || calls != 1 {
		t.Fatalf("Apply returned %v after %d calls of BeforeWrites, want its error after one", err, calls)
	}
	nothingWritten("after BeforeWrites refused,")
	calls = 0
	result, err := a.Apply(context.Background(), Owner{Namespace: "default", Name: "demo"}, objects, Options{DefaultNamespace: ns,
		BeforeWrites: func() error { calls++; return nil }})
	if err != nil || calls != 1 || result.Created != 2 {
		t.Fatalf("Apply: %v, %d calls of BeforeWrites, %+v; want both created after one call", err, calls, result)
	}
}
