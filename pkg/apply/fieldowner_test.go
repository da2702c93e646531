package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
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
	serverSideApply(t, cms, "intruder", map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "settings"}, "data": map[string]any{"a": "1"}})
	live := toApply(t, cms, "settings")
	unstructured.RemoveNestedField(live, "data", "a")
	serverSideApply(t, cms, FieldManager, live)
	dataA := fieldpath.MakePathOrDie("data", "a")
	if ownedFields(t, cms, "settings").Has(dataA) {
		t.Fatal("the test's own apply left data.a alumiini's")
	}

	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Previous: result.Inventory,
		Write: func(Change) bool { return false }})
	if err != nil || len(result.Changes) != 1 || !result.Changes[0].OwnershipOnly || result.Changes[0].Action != Configured {
		t.Fatalf("a field taken from alumiini is not a change in ownership: %+v %v", result.Changes, err)
	}
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Previous: result.Inventory})
	if err != nil || result.Configured != 1 {
		t.Fatalf("taking the field back: %+v %v", result, err)
	}
	if own := ownedFields(t, cms, "settings"); !own.Has(dataA) {
		t.Errorf("alumiini does not own data.a again: %s", own)
	}
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Previous: result.Inventory})
	if err != nil || result.Unchanged != 1 || len(result.Changes) != 0 {
		t.Errorf("an apply after the field was taken back wrote again: %+v %v", result, err)
	}
}

// TestIgnoredFieldsOfListItemsAreMatchedByPosition: a port updater owns the
// second port's targetPort, which the GitRepository ignores by position
// (/spec/ports/1/targetPort), while ownership names the port by its key.
// Applying takes the live value, so alumiini co-owns it after each apply
// and the updater takes it at each update: no write for that. The first
// port's targetPort, not ignored, taken with git's value, is a change.
func TestIgnoredFieldsOfListItemsAreMatchedByPosition(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	owner := Owner{Namespace: "default", Name: "port-updater"}
	objects := render(t, "svc.yaml", `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: https, port: 443, targetPort: 8443}
`)
	ignore := []IgnoreRule{{Kind: "Service", Paths: []string{"/spec/ports/1/targetPort"}}}
	result, err := a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Ignore: ignore})
	if err != nil {
		t.Fatal(err)
	}
	services := a.Client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "services"}).Namespace(ns)
	setTargetPort := func(index, port int) {
		t.Helper()
		patch := fmt.Sprintf(`[{"op":"replace","path":"/spec/ports/%d/targetPort","value":%d}]`, index, port)
		if _, err := services.Patch(ctx, "web", types.JSONPatchType, []byte(patch), metav1.PatchOptions{FieldManager: "port-updater"}); err != nil {
			t.Fatal(err)
		}
	}
	setTargetPort(1, 9443)
	https := fieldpath.MakePathOrDie("spec", "ports", fieldpath.KeyByFields("port", 443, "protocol", "TCP"), "targetPort")
	if ownedFields(t, services, "web").Has(https) {
		t.Fatal("the port updater's patch left the https targetPort alumiini's")
	}
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Ignore: ignore, Previous: result.Inventory})
	if err != nil || result.Unchanged != 1 || len(result.Changes) != 0 {
		t.Fatalf("an ignored field's owner counted as a change: %+v %v", result.Changes, err)
	}

	setTargetPort(0, 8081)
	setTargetPort(0, 8080) // git's value, now the updater's alone
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Ignore: ignore, Previous: result.Inventory,
		Write: func(Change) bool { return false }})
	if err != nil || len(result.Changes) != 1 || !result.Changes[0].OwnershipOnly {
		t.Fatalf("the http targetPort, taken with git's value, is not a change in ownership: %+v %v", result.Changes, err)
	}
}

// TestAPositionIsNotSteeredOntoAnotherItem: an ignore rule names the second
// port by position; whoever may write the Service puts a port of its own
// first, so the live second port is http, not git's https, and then takes
// http's targetPort with git's value. That field is not ignored: it is
// taken back, though the pointer now reaches it in the live order.
func TestAPositionIsNotSteeredOntoAnotherItem(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	owner := Owner{Namespace: "default", Name: "steered"}
	objects := render(t, "svc.yaml", `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: https, port: 443, targetPort: 8443}
`)
	ignore := []IgnoreRule{{Kind: "Service", Paths: []string{"/spec/ports/1/targetPort"}}}
	result, err := a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Ignore: ignore})
	if err != nil {
		t.Fatal(err)
	}
	services := a.Client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "services"}).Namespace(ns)
	patch := func(p string) {
		t.Helper()
		if _, err := services.Patch(ctx, "web", types.JSONPatchType, []byte(p), metav1.PatchOptions{FieldManager: "tenant"}); err != nil {
			t.Fatal(err)
		}
	}
	patch(`[{"op":"add","path":"/spec/ports/0","value":{"name":"extra","port":9999,"targetPort":9999}},` +
		`{"op":"replace","path":"/spec/ports/2/targetPort","value":8080}]`)
	if result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Ignore: ignore, Previous: result.Inventory}); err != nil {
		t.Fatal(err)
	}
	patch(`[{"op":"replace","path":"/spec/ports/1/targetPort","value":8081}]`)
	patch(`[{"op":"replace","path":"/spec/ports/1/targetPort","value":8080}]`) // http's, git's value, now the tenant's
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Ignore: ignore, Previous: result.Inventory,
		Write: func(Change) bool { return false }})
	if err != nil || len(result.Changes) != 1 || !result.Changes[0].OwnershipOnly {
		t.Fatalf("http's targetPort, taken while a pointer to the second port reached it, is not a change: %+v %v", result.Changes, err)
	}
}

// TestAnApplyThroughAnotherVersionIsTakenBack: a kind served in two
// versions keeps one apply entry per manager, in the version last applied
// through. An apply under alumiini's name through the other version (here
// autoscaling/v1 for git's autoscaling/v2) leaves a set that cannot be
// compared with git's; it is written once, in git's version.
func TestAnApplyThroughAnotherVersionIsTakenBack(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	owner := Owner{Namespace: "default", Name: "versions"}
	objects := render(t, "hpa.yaml", `apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
`)
	result, err := a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	v1 := a.Client.Resource(schema.GroupVersionResource{Group: "autoscaling", Version: "v1", Resource: "horizontalpodautoscalers"}).Namespace(ns)
	serverSideApply(t, v1, FieldManager, map[string]any{"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
		"metadata": map[string]any{"name": "web",
			"labels":      map[string]any{LabelName: owner.Name, LabelNamespace: owner.Namespace},
			"annotations": map[string]any{AnnotationOwner: owner.Namespace + "/" + owner.Name}},
		"spec": map[string]any{"scaleTargetRef": map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
			"minReplicas": 1, "maxReplicas": 5}})
	if _, version, _ := ownFields(get(t, v1, "web")); version != "autoscaling/v1" {
		t.Fatalf("alumiini's entry is in %q after an apply through autoscaling/v1", version)
	}
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Previous: result.Inventory})
	if err != nil || len(result.Changes) != 1 || !result.Changes[0].OwnershipOnly {
		t.Fatalf("an apply through another version is not a change in ownership: %+v %v", result.Changes, err)
	}
	if _, version, _ := ownFields(get(t, v1, "web")); version != "autoscaling/v2" {
		t.Errorf("alumiini's entry is in %q after the write, want git's autoscaling/v2", version)
	}
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Previous: result.Inventory})
	if err != nil || result.Unchanged != 1 {
		t.Errorf("an apply after the write wrote again: %+v %v", result, err)
	}
}

// TestAFieldOwnedWholeIsNotHiddenByAnIgnoredPathInside: an atomic list
// (container args) is owned whole by whoever wrote it last; an ignore rule
// naming one of its items must not hide the others.
func TestAFieldOwnedWholeIsNotHiddenByAnIgnoredPathInside(t *testing.T) {
	args := fieldpath.MakePathOrDie("spec", "containers", fieldpath.KeyByFields("name", "app"), "args")
	live, dry := ownedBy(fieldpath.NewSet()), ownedBy(fieldpath.NewSet(args))
	live.Object["spec"] = map[string]any{"containers": []any{map[string]any{"name": "app", "args": []any{"--injected", "--safe"}}}}
	if !ownershipLost(live, dry, live, [][]string{{"spec", "containers", "0", "args", "0"}}) {
		t.Error("args, owned whole, was hidden by an ignore rule naming its first item")
	}
	if ownershipLost(live, dry, live, [][]string{{"spec", "containers", "0", "args"}}) {
		t.Error("args, ignored whole, counted")
	}
}

// TestIgnoredPathsAreFoundByKeyValueAndIndex: a pointer's positions name
// the owned items at those positions, whatever names them in field sets.
func TestIgnoredPathsAreFoundByKeyValueAndIndex(t *testing.T) {
	obj := map[string]any{"spec": map[string]any{
		"ports": []any{
			map[string]any{"port": int64(80), "protocol": "TCP", "targetPort": int64(8080)},
			map[string]any{"port": int64(443), "protocol": "TCP", "targetPort": int64(8443)},
		},
		"hosts": []any{"a.example", "b.example"},
		"args":  []any{"-v", "-q"},
	}}
	port := func(n int) *value.FieldList { return fieldpath.KeyByFields("port", n, "protocol", "TCP") }
	set := fieldpath.NewSet(
		fieldpath.MakePathOrDie("spec", "ports", port(80), "targetPort"),
		fieldpath.MakePathOrDie("spec", "ports", port(443), "targetPort"),
		fieldpath.MakePathOrDie("spec", "hosts", value.NewValueInterface("a.example")),
		fieldpath.MakePathOrDie("spec", "hosts", value.NewValueInterface("b.example")),
		fieldpath.MakePathOrDie("spec", "args", 0),
		fieldpath.MakePathOrDie("spec", "args", 1),
	)
	ignored := [][]string{{"spec", "ports", "1", "targetPort"}, {"spec", "hosts", "1"}, {"spec", "args", "0"},
		{"spec", "ports", "7"}, {"spec", "missing", "x"}}
	left := set.RecursiveDifference(ignoredWithin(set, obj, obj, ignored))
	want := fieldpath.NewSet(
		fieldpath.MakePathOrDie("spec", "ports", port(80), "targetPort"),
		fieldpath.MakePathOrDie("spec", "hosts", value.NewValueInterface("a.example")),
		fieldpath.MakePathOrDie("spec", "args", 1),
	)
	if !left.Equals(want) {
		t.Errorf("left after ignoring:\n%s\nwant:\n%s", left, want)
	}
}

// TestAKeyLackingAFieldIsNotTakenForAnotherItem: a list-map key leaves out
// a key field its item lacks (an optional one without default), so k:{a:1}
// is item {a:1}, not the item {a:1, b:2} a pointer names.
func TestAKeyLackingAFieldIsNotTakenForAnotherItem(t *testing.T) {
	short := fieldpath.MakePathOrDie("spec", "items", fieldpath.KeyByFields("a", 1), "x")
	long := fieldpath.MakePathOrDie("spec", "items", fieldpath.KeyByFields("a", 1, "b", 2), "x")
	obj := map[string]any{"spec": map[string]any{"items": []any{
		map[string]any{"a": int64(1), "x": "git"},
		map[string]any{"a": int64(1), "b": int64(2), "x": "ignored"},
	}}}
	for _, set := range []*fieldpath.Set{fieldpath.NewSet(short, long), fieldpath.NewSet(short)} {
		left := set.RecursiveDifference(ignoredWithin(set, obj, obj, [][]string{{"spec", "items", "1", "x"}}))
		if !left.Has(short) || left.Has(long) {
			t.Errorf("ignoring the second item's x in %s left %s", set, left)
		}
	}
}

// TestAPointerIntoAnotherPointerIsScannedOnce: pointers within another
// ignored one are dropped, as are duplicates, so a tenant's long list under
// an ignored path is not scanned once per pointer into it.
func TestAPointerIntoAnotherPointerIsScannedOnce(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Pod"}}
	got := ignoredTokens(u, []IgnoreRule{{Kind: "Pod", Paths: []string{"/spec/env/3/value", "/spec/env", "/spec/env/0",
		"/spec/image", "/spec/image", "/spec/imagePullPolicy"}}})
	want := [][]string{{"spec", "env"}, {"spec", "image"}, {"spec", "imagePullPolicy"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("kept %v, want %v", got, want)
	}
}

// BenchmarkOwnershipLostOverALongIgnoredList: a tenant who may write an
// object whose env list is ignored fills it (20,000 items); each of its
// writes costs one comparison, which must stay linear in the list (an
// earlier version took 33 s at 16,000 items).
func BenchmarkOwnershipLostOverALongIgnoredList(b *testing.B) {
	const n = 20000
	env := make([]any, n)
	set := fieldpath.NewSet()
	for i := range env {
		name := fmt.Sprintf("VAR_%05d", i)
		env[i] = map[string]any{"name": name, "value": "x"}
		set.Insert(fieldpath.MakePathOrDie("spec", "env", fieldpath.KeyByFields("name", name), "value"))
	}
	set.Insert(fieldpath.MakePathOrDie("spec", "image"))
	live, dry := ownedBy(fieldpath.NewSet(fieldpath.MakePathOrDie("spec", "image"))), ownedBy(set)
	live.Object["spec"] = map[string]any{"env": env, "image": "app:1"}
	ignored := [][]string{{"spec", "env"}}
	for b.Loop() {
		if ownershipLost(live, dry, live, ignored) {
			b.Fatal("the ignored env list counted")
		}
	}
}

// ownedBy is an object whose managedFields give alumiini's apply entry set.
func ownedBy(set *fieldpath.Set) *unstructured.Unstructured {
	raw, err := set.ToJSON()
	if err != nil {
		panic(err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationApply,
		APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: raw}}})
	return u
}

func serverSideApply(t *testing.T, client dynamic.ResourceInterface, manager string, object map[string]any) {
	t.Helper()
	data, err := json.Marshal(object)
	if err != nil {
		t.Fatal(err)
	}
	name, _, _ := unstructured.NestedString(object, "metadata", "name")
	force := true
	if _, err := client.Patch(context.Background(), name, types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: manager, Force: &force}); err != nil {
		t.Fatal(err)
	}
}

// toApply is the live object as a client would apply it: without the
// fields the server sets.
func toApply(t *testing.T, client dynamic.ResourceInterface, name string) map[string]any {
	t.Helper()
	live := get(t, client, name).Object
	for _, serverSet := range []string{"managedFields", "resourceVersion", "uid", "creationTimestamp"} {
		unstructured.RemoveNestedField(live, "metadata", serverSet)
	}
	return live
}

func get(t *testing.T, client dynamic.ResourceInterface, name string) *unstructured.Unstructured {
	t.Helper()
	live, err := client.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return live
}

func ownedFields(t *testing.T, client dynamic.ResourceInterface, name string) *fieldpath.Set {
	t.Helper()
	own, _, ok := ownFields(get(t, client, name))
	if !ok {
		t.Fatalf("alumiini's managedFields of %s cannot be read", name)
	}
	return own
}

// TestManyPositionsIntoALongListExcuseNothing: 512 pointers (as many as
// the rules allow on one object) into a list a tenant made 20,000 items long
// would make each comparison scan it 512 times; past maxItemLooks the
// positions excuse nothing, so the object is written (under fight backoff)
// rather than the shared process's CPU spent.
func TestManyPositionsIntoALongListExcuseNothing(t *testing.T) {
	const n = 20000
	env := make([]any, n)
	for i := range env {
		env[i] = map[string]any{"name": fmt.Sprintf("VAR_%05d", i), "value": "x"}
	}
	live := ownedBy(fieldpath.NewSet())
	live.Object["spec"] = map[string]any{"env": env}
	lost := func(pointers int) bool {
		set := fieldpath.NewSet()
		var ignored [][]string
		for i := range pointers {
			set.Insert(fieldpath.MakePathOrDie("spec", "env", fieldpath.KeyByFields("name", fmt.Sprintf("VAR_%05d", i)), "value"))
			ignored = append(ignored, []string{"spec", "env", fmt.Sprint(i), "value"})
		}
		return ownershipLost(live, ownedBy(set), live, ignored)
	}
	if !lost(512) {
		t.Error("512 positions into a 20,000-item list were all resolved")
	}
	if lost(6) {
		t.Error("6 positions into the list were not resolved")
	}
}
