package apply

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/value"
)

// TestAFieldAnotherManagerTookIsTakenBack: whoever may write an applied
// object shares a field (applies git's value under another name), then
// applies under alumiini's name without it. The values are still git's,
// but the field is no longer alumiini's, so drift detection, which follows
// ownership, would miss its next change. The next apply names the object as
// changed in ownership only and writes it; after that, nothing.
func TestAFieldAnotherManagerTookIsTakenBack(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	owner := Owner{Namespace: "default", Name: "taken"}
	objects := render(t, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n  b: \"2\"\n")
	result, err := a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	cms := a.Client.Resource(configMaps).Namespace(ns)
	serverSideApply(t, cms.Patch, "settings", "intruder", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings"},"data":{"a":"1"}}`)
	live, err := cms.Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unstructured.RemoveNestedField(live.Object, "data", "a")
	for _, serverSet := range []string{"managedFields", "resourceVersion", "uid", "creationTimestamp"} {
		unstructured.RemoveNestedField(live.Object, "metadata", serverSet)
	}
	withoutA, _ := json.Marshal(live.Object)
	serverSideApply(t, cms.Patch, "settings", FieldManager, string(withoutA))
	dataA := fieldpath.MakePathOrDie("data", "a")
	if own := ownedFields(t, cms.Get, "settings"); own.Has(dataA) {
		t.Fatal("the test's own apply left data.a alumiini's")
	}

	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Previous: result.Inventory,
		Write: func(Change) bool { return false }})
	if err != nil || len(result.Changes) != 1 || !result.Changes[0].FieldsTaken || result.Changes[0].Action != Configured {
		t.Fatalf("a field taken from alumiini is not a change in ownership: %+v %v", result.Changes, err)
	}
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Previous: result.Inventory})
	if err != nil || result.Configured != 1 {
		t.Fatalf("taking the field back: %+v %v", result, err)
	}
	if own := ownedFields(t, cms.Get, "settings"); !own.Has(dataA) {
		t.Errorf("alumiini does not own data.a again: %s", own)
	}
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Previous: result.Inventory})
	if err != nil || result.Unchanged != 1 || len(result.Changes) != 0 {
		t.Errorf("an apply after the field was taken back wrote again: %+v %v", result, err)
	}
}

// TestAnIgnoredFieldOfAListItemTakenByAnotherIsNotDrift: an image updater
// owns the first container's image, which the GitRepository ignores;
// applying takes the image's live value, so alumiini co-owns it after each
// apply and the updater takes it at each update. That is not worth a write,
// though the rule names the container by position and ownership by name.
func TestAnIgnoredFieldOfAListItemTakenByAnotherIsNotDrift(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	owner := Owner{Namespace: "default", Name: "image-updater"}
	objects := render(t, "deploy.yaml", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 0
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: sidecar, image: "registry.invalid/sidecar:1"}
      - {name: app, image: "registry.invalid/app:1"}
`)
	ignore := []IgnoreRule{{Group: "apps", Kind: "Deployment", Paths: []string{"/spec/template/spec/containers/1/image"}}}
	result, err := a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Ignore: ignore})
	if err != nil {
		t.Fatal(err)
	}
	deployments := a.Client.Resource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}).Namespace(ns)
	patch := `[{"op":"replace","path":"/spec/template/spec/containers/1/image","value":"registry.invalid/app:2"}]`
	if _, err := deployments.Patch(ctx, "web", types.JSONPatchType, []byte(patch), metav1.PatchOptions{FieldManager: "image-updater"}); err != nil {
		t.Fatal(err)
	}
	image := fieldpath.MakePathOrDie("spec", "template", "spec", "containers",
		fieldpath.KeyByFields("name", "app"), "image")
	if own := ownedFields(t, deployments.Get, "web"); own.Has(image) {
		t.Fatal("the image updater's patch left the image alumiini's")
	}
	waitForRevision(t, deployments.Get, "web", "2") // kube-controller-manager's write, not to race it
	for range 2 {
		result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Ignore: ignore, Previous: result.Inventory})
		if err != nil || result.Unchanged != 1 || len(result.Changes) != 0 {
			t.Fatalf("an ignored field's owner counted as drift: %+v %v", result.Changes, err)
		}
	}
	// The same image taken while not ignored is taken back.
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Previous: result.Inventory,
		Write: func(Change) bool { return false }})
	if err != nil || len(result.Changes) != 1 || result.Changes[0].FieldsTaken {
		t.Fatalf("without the rule the image's value differs from git: %+v %v", result.Changes, err)
	}
}

func TestIgnoredPathsMatchListItemsByPosition(t *testing.T) {
	obj := map[string]any{
		"spec": map[string]any{
			"ports": []any{
				map[string]any{"port": int64(80), "protocol": "TCP", "targetPort": int64(8080)},
				map[string]any{"port": int64(443), "protocol": "TCP", "targetPort": int64(8443)},
			},
			"hosts": []any{"a.example", "b.example"},
			"args":  []any{"-v", "-q"},
		},
	}
	port443 := fieldpath.KeyByFields("port", 443, "protocol", "TCP")
	ignored := [][]string{{"spec", "ports", "1", "targetPort"}, {"spec", "hosts", "1"}, {"spec", "args", "0"}}
	for _, c := range []struct {
		path fieldpath.Path
		want bool
	}{
		{fieldpath.MakePathOrDie("spec", "ports", port443, "targetPort"), true},
		{fieldpath.MakePathOrDie("spec", "ports", port443), true}, // the item holding it
		{fieldpath.MakePathOrDie("spec", "ports", fieldpath.KeyByFields("port", 80, "protocol", "TCP"), "targetPort"), false},
		{fieldpath.MakePathOrDie("spec", "ports", fieldpath.KeyByFields("port", 8, "protocol", "TCP")), false},
		{fieldpath.MakePathOrDie("spec", "hosts", value.NewValueInterface("b.example")), true},
		{fieldpath.MakePathOrDie("spec", "hosts", value.NewValueInterface("a.example")), false},
		{fieldpath.MakePathOrDie("spec", "args", 0), true},
		{fieldpath.MakePathOrDie("spec", "args", 1), false},
		{fieldpath.MakePathOrDie("spec", "replicas"), false},
	} {
		if got := isIgnored(c.path, obj, ignored); got != c.want {
			t.Errorf("%s: ignored %v, want %v", c.path, got, c.want)
		}
	}
}

type patchFunc func(context.Context, string, types.PatchType, []byte, metav1.PatchOptions, ...string) (*unstructured.Unstructured, error)

type getFunc func(context.Context, string, metav1.GetOptions, ...string) (*unstructured.Unstructured, error)

func serverSideApply(t *testing.T, patch patchFunc, name, manager, object string) {
	t.Helper()
	force := true
	if _, err := patch(context.Background(), name, types.ApplyPatchType, []byte(object), metav1.PatchOptions{FieldManager: manager, Force: &force}); err != nil {
		t.Fatal(err)
	}
}

func ownedFields(t *testing.T, get getFunc, name string) *fieldpath.Set {
	t.Helper()
	live, err := get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	own, _, ok := ownFields(live)
	if !ok {
		t.Fatalf("alumiini's managedFields of %s cannot be read", name)
	}
	return own
}

// waitForRevision waits until the Deployment controller has noted a
// Deployment's revision.
func waitForRevision(t *testing.T, get getFunc, name, revision string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 30*time.Second, true,
		func(ctx context.Context) (bool, error) {
			live, err := get(ctx, name, metav1.GetOptions{})
			return err == nil && live.GetAnnotations()["deployment.kubernetes.io/revision"] == revision, nil
		})
	if err != nil {
		t.Fatalf("Deployment %s never reached revision %s: %v", name, revision, err)
	}
}
