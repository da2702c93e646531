package apply

import (
	"context"
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// TestABreakGlassObjectIsNeitherUpdatedNorPruned: an operator who annotates
// an object with suspend-heal keeps it as it is, whatever git says, until
// the annotation goes; then the next apply updates it again.
func TestABreakGlassObjectIsNeitherUpdatedNorPruned(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	owner := Owner{Namespace: "default", Name: "glass"}
	first := render(t,
		"a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: \"1\"\n",
		"b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  v: \"1\"\n")
	result, err := a.Apply(ctx, owner, first, Options{DefaultNamespace: ns, Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	cms := a.Client.Resource(configMaps).Namespace(ns)
	for _, name := range []string{"a", "b"} {
		patch := []byte(`{"metadata":{"annotations":{"` + AnnotationSuspendHeal + `":"true"}},"data":{"v":"hotfix"}}`)
		if _, err := cms.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "operator"}); err != nil {
			t.Fatal(err)
		}
	}
	// Git changes a and drops b.
	second := render(t, "a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: \"2\"\n")
	result, err = a.Apply(ctx, owner, second, Options{DefaultNamespace: ns, Prune: true, Previous: result.Inventory})
	if err != nil {
		t.Fatal(err)
	}
	if len(result.Held) != 2 || result.Pruned != 0 || result.Configured != 0 {
		t.Fatalf("held objects were touched: %+v", result)
	}
	if len(result.Inventory) != 2 {
		t.Errorf("a held object that left git must stay in the inventory, to be pruned once released: %v", result.Inventory)
	}
	for _, name := range []string{"a", "b"} {
		live, err := cms.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if v, _, _ := unstructured.NestedString(live.Object, "data", "v"); v != "hotfix" {
			t.Errorf("%s: the hotfix was overwritten: %q", name, v)
		}
	}

	// Released: git wins again and b is pruned.
	for _, name := range []string{"a", "b"} {
		patch := []byte(`{"metadata":{"annotations":{"` + AnnotationSuspendHeal + `":null}}}`)
		if _, err := cms.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "operator"}); err != nil {
			t.Fatal(err)
		}
	}
	result, err = a.Apply(ctx, owner, second, Options{DefaultNamespace: ns, Prune: true, Previous: result.Inventory})
	if err != nil || result.Configured != 1 || result.Pruned != 1 || len(result.Held) != 0 {
		t.Fatalf("after release: %+v %v", result, err)
	}
	live, _ := cms.Get(ctx, "a", metav1.GetOptions{})
	if v, _, _ := unstructured.NestedString(live.Object, "data", "v"); v != "2" {
		t.Errorf("after release git's value is applied, got %q", v)
	}
}

// TestAnOwnerThatIgnoresBreakGlassUpdatesAndPrunesHeldObjects: with
// spec.drift.allowBreakGlass false, whoever may patch an object cannot keep
// it from git with the annotation.
func TestAnOwnerThatIgnoresBreakGlassUpdatesAndPrunesHeldObjects(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	owner := Owner{Namespace: "default", Name: "no-glass", IgnoreBreakGlass: true}
	first := render(t,
		"a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: \"1\"\n",
		"b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  v: \"1\"\n")
	result, err := a.Apply(ctx, owner, first, Options{DefaultNamespace: ns, Prune: true})
	if err != nil {
		t.Fatal(err)
	}
	cms := a.Client.Resource(configMaps).Namespace(ns)
	for _, name := range []string{"a", "b"} {
		patch := []byte(`{"metadata":{"annotations":{"` + AnnotationSuspendHeal + `":"true"}},"data":{"v":"kept"}}`)
		if _, err := cms.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "tenant"}); err != nil {
			t.Fatal(err)
		}
	}
	second := render(t, "a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: \"2\"\n")
	result, err = a.Apply(ctx, owner, second, Options{DefaultNamespace: ns, Prune: true, Previous: result.Inventory})
	if err != nil || len(result.Held) != 0 || result.Configured != 1 || result.Pruned != 1 {
		t.Fatalf("the annotation held objects of an owner that ignores it: %+v %v", result, err)
	}
	live, err := cms.Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _, _ := unstructured.NestedString(live.Object, "data", "v"); v != "2" {
		t.Errorf("git's value was not applied over the annotated object: %q", v)
	}
	if _, err := cms.Get(ctx, "b", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the annotated object that left git was not pruned: %v", err)
	}
	if n, err := a.Delete(ctx, owner, result.Inventory, nil); err != nil || n != 1 {
		t.Errorf("deleting the owner's objects deleted %d, %v; want the annotated one deleted", n, err)
	}
}

// TestIgnoredFieldsKeepTheirLiveValue: a field under an ignore rule is set
// at creation and then left to whoever changes it, as an autoscaler does.
func TestIgnoredFieldsKeepTheirLiveValue(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	owner := Owner{Namespace: "default", Name: "ignore"}
	objects := render(t, "a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: scaled\ndata:\n  replicas: \"1\"\n  other: \"x\"\n")
	ignore := []IgnoreRule{{Kind: "ConfigMap", Paths: []string{"/data/replicas"}}}
	result, err := a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Ignore: ignore})
	if err != nil || result.Created != 1 {
		t.Fatalf("create: %+v %v", result, err)
	}
	cms := a.Client.Resource(configMaps).Namespace(ns)
	patch := []byte(`{"data":{"replicas":"7"}}`)
	if _, err := cms.Patch(ctx, "scaled", types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "autoscaler"}); err != nil {
		t.Fatal(err)
	}
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Ignore: ignore, Previous: result.Inventory})
	if err != nil || result.Unchanged != 1 || len(result.Changes) != 0 {
		t.Fatalf("an ignored field's change is not drift: %+v %v", result, err)
	}
	// Without the rule the same change is drift, and the other writer is named.
	var heldBack []Change
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Previous: result.Inventory,
		Write: func(c Change) bool { heldBack = append(heldBack, c); return false }})
	if err != nil || len(result.Changes) != 1 || result.Changes[0].Manager != "autoscaler" || result.Changes[0].Written {
		t.Fatalf("drift without the rule: %+v %v", result.Changes, err)
	}
	live, _ := cms.Get(ctx, "scaled", metav1.GetOptions{})
	if v, _, _ := unstructured.NestedString(live.Object, "data", "replicas"); v != "7" {
		t.Errorf("a change held back by Write was written: %q", v)
	}
}

// TestBreakGlassCannotComeFromGit: a pushed manifest carrying the break-glass
// annotation would outlive its own revert and its GitRepository's deletion;
// it is refused, and nothing of its commit is applied.
func TestBreakGlassCannotComeFromGit(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	objects := render(t,
		"keep.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: backdoor\n  annotations:\n    "+AnnotationSuspendHeal+": \"true\"\ndata:\n  v: \"evil\"\n",
		"ok.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n")
	_, err := a.Apply(context.Background(), Owner{Namespace: "default", Name: "pushed"}, objects, Options{DefaultNamespace: ns})
	var aerr *Error
	if !errors.As(err, &aerr) || aerr.Reason != ReasonBreakGlassInGit || !strings.Contains(err.Error(), "backdoor") {
		t.Fatalf("got %v", err)
	}
	if _, err := a.Client.Resource(configMaps).Namespace(ns).Get(context.Background(), "fine", metav1.GetOptions{}); err == nil {
		t.Error("the rest of the commit was applied")
	}
}
