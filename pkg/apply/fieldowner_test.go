package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/value"

	"github.com/falsesystems/alumiini/pkg/manifest"
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
	objects, ignore, result, services := httpAndHTTPS(t, a, ns, owner)
	var err error
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

// TestAPositionIsNotSteeredOntoAnotherItem: an ignore rule names git's
// second port by position. Whoever may write the Service puts a port of its
// own first, so the live second port is http: https keeps its live
// targetPort all the same, http keeps git's, and taking http's targetPort
// with git's value is still a change, though the live order now puts http
// where the pointer points.
func TestAPositionIsNotSteeredOntoAnotherItem(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	owner := Owner{Namespace: "default", Name: "steered"}
	objects, ignore, result, services := httpAndHTTPS(t, a, ns, owner)
	var err error
	patch := func(p string) {
		t.Helper()
		if _, err := services.Patch(ctx, "web", types.JSONPatchType, []byte(p), metav1.PatchOptions{FieldManager: "tenant"}); err != nil {
			t.Fatal(err)
		}
	}
	patch(`[{"op":"replace","path":"/spec/ports/1/targetPort","value":9443},` +
		`{"op":"add","path":"/spec/ports/0","value":{"name":"extra","port":9999,"targetPort":9999}}]`)
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Ignore: ignore, Previous: result.Inventory})
	if err != nil || result.Unchanged != 1 {
		t.Fatalf("an ignored port and another's port put first: %+v %v", result, err)
	}
	ports, _, _ := unstructured.NestedSlice(get(t, services, "web").Object, "spec", "ports")
	if fmt.Sprint(targetPorts(ports)) != "map[extra:9999 http:8080 https:9443]" {
		t.Errorf("target ports after the apply: %v", targetPorts(ports))
	}

	patch(`[{"op":"replace","path":"/spec/ports/1/targetPort","value":8081}]`)
	patch(`[{"op":"replace","path":"/spec/ports/1/targetPort","value":8080}]`) // http's, git's value, now the tenant's
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Ignore: ignore, Previous: result.Inventory,
		Write: func(Change) bool { return false }})
	if err != nil || len(result.Changes) != 1 || !result.Changes[0].OwnershipOnly {
		t.Fatalf("http's targetPort, taken while the pointer's position held it, is not a change: %+v %v", result.Changes, err)
	}
}

// httpAndHTTPS applies a Service of ports http and https for owner, the
// https targetPort ignored by position.
func httpAndHTTPS(t *testing.T, a *Applier, ns string, owner Owner) ([]manifest.Object, []IgnoreRule, *Result, dynamic.ResourceInterface) {
	t.Helper()
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
	result, err := a.Apply(context.Background(), owner, objects, Options{DefaultNamespace: ns, Ignore: ignore})
	if err != nil {
		t.Fatal(err)
	}
	return objects, ignore, result, a.Client.Resource(schema.GroupVersionResource{Version: "v1", Resource: "services"}).Namespace(ns)
}

func targetPorts(ports []any) map[string]any {
	byName := map[string]any{}
	for _, p := range ports {
		m, _ := p.(map[string]any)
		byName[fmt.Sprint(m["name"])] = m["targetPort"]
	}
	return byName
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
	if version := ownFields(get(t, v1, "web"), math.MaxInt).apiVersion; version != "autoscaling/v1" {
		t.Fatalf("alumiini's entry is in %q after an apply through autoscaling/v1", version)
	}
	result, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns, Previous: result.Inventory})
	if err != nil || len(result.Changes) != 1 || !result.Changes[0].OwnershipOnly {
		t.Fatalf("an apply through another version is not a change in ownership: %+v %v", result.Changes, err)
	}
	if version := ownFields(get(t, v1, "web"), math.MaxInt).apiVersion; version != "autoscaling/v2" {
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
	name := fieldpath.MakePathOrDie("spec", "containers", fieldpath.KeyByFields("name", "app"), "name")
	live, dry := ownedBy(fieldpath.NewSet(name)), ownedBy(fieldpath.NewSet(name, args))
	live.Object["spec"] = map[string]any{"containers": []any{map[string]any{"name": "app", "args": []any{"--injected", "--safe"}}}}
	if !ownershipLost(ownFields(live, math.MaxInt), ownFields(dry, math.MaxInt), ignoring(live, live, "/spec/containers/0/args/0")) {
		t.Error("args, owned whole, was hidden by an ignore rule naming its first item")
	}
	if ownershipLost(ownFields(live, math.MaxInt), ownFields(dry, math.MaxInt), ignoring(live, live, "/spec/containers/0/args")) {
		t.Error("args, ignored whole, counted")
	}
}

// TestIgnoredPathsAreFoundByKeyValueAndPosition: a pointer's positions
// name git's items; alumiini's own field set names them by key or value,
// and the live items of that key or value are the ones excused and kept.
func TestIgnoredPathsAreFoundByKeyValueAndPosition(t *testing.T) {
	port := func(n int) *value.FieldList { return fieldpath.KeyByFields("port", n, "protocol", "TCP") }
	own := fieldpath.NewSet(
		fieldpath.MakePathOrDie("spec", "ports", port(80), "targetPort"),
		fieldpath.MakePathOrDie("spec", "ports", port(443), "targetPort"),
		fieldpath.MakePathOrDie("spec", "hosts", value.NewValueInterface("a.example")),
		fieldpath.MakePathOrDie("spec", "hosts", value.NewValueInterface("b.example")),
		fieldpath.MakePathOrDie("spec", "args"),
	)
	git := map[string]any{"spec": map[string]any{
		"ports": []any{
			map[string]any{"port": int64(80), "targetPort": int64(8080)}, // protocol left to the default
			map[string]any{"port": int64(443), "targetPort": int64(8443)},
		},
		"hosts": []any{"a.example", "b.example"},
		"args":  []any{"-v", "-q"},
	}}
	live := map[string]any{"spec": map[string]any{
		"ports": []any{
			map[string]any{"port": int64(9), "protocol": "TCP", "targetPort": int64(9)}, // someone else's, first
			map[string]any{"port": int64(80), "protocol": "TCP", "targetPort": int64(8080)},
			map[string]any{"port": int64(443), "protocol": "TCP", "targetPort": int64(9443)},
		},
		"hosts": []any{"b.example", "a.example"},
		"args":  []any{"-v", "-q"},
	}}
	found := findIgnored(live, git, own, [][]string{{"spec", "ports", "1", "targetPort"}, {"spec", "hosts", "1"},
		{"spec", "args", "0"}, {"spec", "ports", "7"}, {"spec", "missing", "0"}})
	var got []string
	for _, f := range found {
		got = append(got, fmt.Sprintf("%v→%v %v", f.git, f.live, f.path))
	}
	want := []string{
		`[spec ports 1 targetPort]→[spec ports 2 targetPort] .spec.ports[port=443,protocol="TCP"].targetPort`,
		`[spec hosts 1]→[spec hosts 0] .spec.hosts[="b.example"]`,
		`[spec args 0]→[spec args 0] `, // owned whole: the same position, nothing excused
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("found\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestAKeyLackingAFieldIsNotTakenForAnotherItem: a list-map key leaves out
// a key field its item lacks (an optional one without default), so k:{a:1}
// is item {a:1}; it must not be taken for the item {a:1, b:2} too.
func TestAKeyLackingAFieldIsNotTakenForAnotherItem(t *testing.T) {
	short := fieldpath.MakePathOrDie("spec", "items", fieldpath.KeyByFields("a", 1), "x")
	long := fieldpath.MakePathOrDie("spec", "items", fieldpath.KeyByFields("a", 1, "b", 2), "x")
	obj := map[string]any{"spec": map[string]any{"items": []any{
		map[string]any{"a": int64(1), "x": "git"},
		map[string]any{"a": int64(1), "b": int64(2), "x": "ignored"},
	}}}
	found := findIgnored(obj, obj, fieldpath.NewSet(short, long), [][]string{{"spec", "items", "1", "x"}})
	if len(found) != 1 || !found[0].path.Equals(long) {
		t.Errorf("the second item's x found as %+v, want %s", found, long)
	}
	if found := findIgnored(obj, obj, fieldpath.NewSet(short), [][]string{{"spec", "items", "0", "x"}}); len(found) != 0 {
		t.Errorf("k:{a:1}, matching both live items, named one: %+v", found)
	}
	if found := findIgnored(obj, obj, fieldpath.NewSet(short, long), [][]string{{"spec", "items", "0", "x"}}); len(found) != 1 ||
		!found[0].path.Equals(short) {
		t.Errorf("the first item's x found as %+v, want %s", found, short)
	}
}

// TestAKeyGitLeavesToADefaultIsNotAnotherItemsKey: git lists port 53 for
// SCTP and port 53 with its protocol left to the default (TCP); the pointer
// to the second names 53/TCP, not 53/SCTP, which also matches it while its
// protocol is unsaid.
func TestAKeyGitLeavesToADefaultIsNotAnotherItemsKey(t *testing.T) {
	port := func(protocol string) *value.FieldList { return fieldpath.KeyByFields("port", 53, "protocol", protocol) }
	own := fieldpath.NewSet(fieldpath.MakePathOrDie("spec", "ports", port("SCTP"), "targetPort"),
		fieldpath.MakePathOrDie("spec", "ports", port("TCP"), "targetPort"))
	git := map[string]any{"spec": map[string]any{"ports": []any{
		map[string]any{"port": int64(53), "protocol": "SCTP", "targetPort": int64(1000)},
		map[string]any{"port": int64(53), "targetPort": int64(2000)},
	}}}
	live := map[string]any{"spec": map[string]any{"ports": []any{
		map[string]any{"port": int64(53), "protocol": "TCP", "targetPort": int64(2222)},
		map[string]any{"port": int64(53), "protocol": "SCTP", "targetPort": int64(1000)},
	}}}
	found := findIgnored(live, git, own, [][]string{{"spec", "ports", "1", "targetPort"}})
	want := fieldpath.MakePathOrDie("spec", "ports", port("TCP"), "targetPort")
	if len(found) != 1 || !found[0].path.Equals(want) || fmt.Sprint(found[0].live) != "[spec ports 0 targetPort]" {
		t.Errorf("found %+v, want %s at the live first port", found, want)
	}
}

// TestDuplicateAndNestedPointersAreDropped: pointers within another
// ignored one are dropped, as are duplicates, so a tenant's long list under
// an ignored path is not scanned once per pointer into it.
func TestDuplicateAndNestedPointersAreDropped(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Pod"}}
	got := ignoredTokens(u, []IgnoreRule{{Kind: "Pod", Paths: []string{"/spec/env/3/value", "/spec/env", "/spec/env/0",
		"/spec/image", "/spec/image", "/spec/imagePullPolicy"}}})
	want := [][]string{{"spec", "env"}, {"spec", "image"}, {"spec", "imagePullPolicy"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("kept %v, want %v", got, want)
	}
}

// BenchmarkOwnershipLostOverALongIgnoredList: a tenant who may write an
// object fills a list (20,000 items) that an ignore rule covers whole, or
// names items of by position; each of its writes costs one comparison,
// which must stay linear in the list (an earlier version took 33 s at
// 16,000 items).
func BenchmarkOwnershipLostOverALongIgnoredList(b *testing.B) {
	const n = 20000
	env := make([]any, n)
	set := fieldpath.NewSet(fieldpath.MakePathOrDie("spec", "image"))
	for i := range env {
		name := fmt.Sprintf("VAR_%05d", i)
		env[i] = map[string]any{"name": name, "value": "x"}
		set.Insert(fieldpath.MakePathOrDie("spec", "env", fieldpath.KeyByFields("name", name), "value"))
	}
	live, dry := ownedBy(fieldpath.NewSet(fieldpath.MakePathOrDie("spec", "image"))), ownedBy(set)
	live.Object["spec"] = map[string]any{"env": env, "image": "app:1"}
	for _, pointers := range [][]string{{"/spec/env"}, {"/spec/env/0/value", "/spec/env/19999/value"}} {
		b.Run(strings.Join(pointers, ","), func(b *testing.B) {
			for b.Loop() {
				ignored := ignoring(live, live, pointers...)
				if ownershipLost(ownFields(live, math.MaxInt), ownFields(dry, math.MaxInt), ignored) != (len(pointers) > 1) {
					b.Fatal("the ignored env list counted, or two items excused the rest")
				}
			}
		})
	}
}

// ignoring finds pointers in live and git as planOne does, alumiini's own
// set taken from live.
func ignoring(live, git *unstructured.Unstructured, pointers ...string) []ignoredField {
	own := ownFields(live, math.MaxInt).fields
	var tokens [][]string
	for _, p := range pointers {
		tokens = append(tokens, pointerTokens(p))
	}
	return findIgnored(live.Object, git.Object, own, tokens)
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
	own := ownFields(get(t, client, name), math.MaxInt)
	if !own.readable {
		t.Fatalf("alumiini's managedFields of %s cannot be read", name)
	}
	return own.fields
}

// TestManyPositionsIntoALongListExcuseNothing: 512 pointers (as many as
// the rules allow on one object) into a list a tenant made 20,000 items long
// would make each comparison scan it 512 times; past maxItemLooks the
// positions find nothing, so the object is written (under fight backoff)
// rather than the shared process's CPU spent.
func TestManyPositionsIntoALongListExcuseNothing(t *testing.T) {
	const n = 20000
	env := make([]any, n)
	own := fieldpath.NewSet()
	for i := range env {
		name := fmt.Sprintf("VAR_%05d", i)
		env[i] = map[string]any{"name": name, "value": "x"}
		own.Insert(fieldpath.MakePathOrDie("spec", "env", fieldpath.KeyByFields("name", name), "name"))
	}
	live := map[string]any{"spec": map[string]any{"env": env}}
	found := func(pointers int) int {
		var tokens [][]string
		for i := range pointers {
			tokens = append(tokens, []string{"spec", "env", fmt.Sprint(i), "value"})
		}
		return len(findIgnored(live, live, own, tokens))
	}
	// Each position looks at the set's level (an element and its one key
	// field each) and the live list (an item, the key's field and the
	// item's two fields each).
	within := maxItemLooks / (6 * n)
	if got := found(within); got != within {
		t.Errorf("%d positions into the list found %d", within, got)
	}
	if got := found(512); got >= 512 {
		t.Errorf("512 positions into a 20,000-item list were all found")
	}

	// The same with alumiini's own set made long (an update may write
	// managedFields) and git's list one item: the positions stop at the
	// bound too, not after each has walked the set.
	short := map[string]any{"spec": map[string]any{"env": []any{map[string]any{"name": "VAR_00000", "value": "x"}}}}
	var tokens [][]string
	for i := range 512 {
		tokens = append(tokens, []string{"spec", "env", "0", fmt.Sprintf("f%d", i)})
	}
	if got := len(findIgnored(short, short, own, tokens)); got > maxItemLooks/n+1 {
		t.Errorf("%d positions found over a 20,000-element set level", got)
	}

	// Or one key of 5,000 fields in that level, and every live item holding
	// a key field the matching key lacks: each field looked at counts (an
	// attacker review spent 31 s at 20,000 fields when elements counted one).
	fields := []any{"name", "x"}
	for i := range 5000 {
		fields = append(fields, fmt.Sprintf("a%05d", i), 1)
	}
	wide := fieldpath.NewSet(fieldpath.MakePathOrDie("spec", "env", fieldpath.KeyByFields("value", "x"), "f"),
		fieldpath.MakePathOrDie("spec", "env", fieldpath.KeyByFields(fields...), "f"))
	items := make([]any, 256)
	for i := range items {
		items[i] = map[string]any{"name": fmt.Sprint(i), "value": "x"}
	}
	many := map[string]any{"spec": map[string]any{"env": items}}
	if got := len(findIgnored(many, many, wide, tokens)); got > maxItemLooks/5000+1 {
		t.Errorf("%d positions looked at over a key of 5,000 fields", got)
	}

	// Or a key of two fields, one of them a list of 100,000 strings, which
	// names git's container in full (git's args are that long): each
	// comparison walks the list, so it counts by its length (an attacker
	// review: 24 s per comparison when it counted as one field).
	args := make([]any, 100_000)
	for i := range args {
		args[i] = "a"
	}
	container := func() map[string]any { return map[string]any{"name": "app", "args": slices.Clone(args)} }
	pod := map[string]any{"spec": map[string]any{"containers": []any{container()}}}
	forged := fieldpath.NewSet(fieldpath.MakePathOrDie("spec", "containers", fieldpath.KeyByFields("name", "app"), "args"),
		fieldpath.MakePathOrDie("spec", "containers", fieldpath.KeyByFields("name", "app", "args", args), "x"))
	var intoContainer [][]string
	for i := range 512 {
		intoContainer = append(intoContainer, []string{"spec", "containers", "0", fmt.Sprintf("f%d", i)})
	}
	if got := len(findIgnored(pod, pod, forged, intoContainer)); got > maxItemLooks/len(args)+1 {
		t.Errorf("%d positions looked at over a key holding a list of %d strings", got, len(args))
	}
}

// readFieldSet reads a whole field set, however large.
func readFieldSet(level map[string]any) (*fieldpath.Set, error) {
	reader := fieldSetReader{left: math.MaxInt}
	set, _, err := reader.read(level)
	return set, err
}

// TestFieldSetsAreReadAsStructuredMergeDiffReadsThem: fieldSetReader reads a
// set decoded from JSON (keys sorted as strings) into the set
// structured-merge-diff reads from the server's bytes, whatever the order.
// (How fast is BenchmarkReadingAnOutOfOrderFieldSet's to say.)
func TestFieldSetsAreReadAsStructuredMergeDiffReadsThem(t *testing.T) {
	for name, raw := range map[string]string{
		"a deployment": `{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{` +
			`"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":9090,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}},` +
			`"k:{\"containerPort\":10000,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}},"k:{\"containerPort\":80,\"protocol\":\"UDP\"}":{}}}}}}}}`,
		"negative numbers":        `{"f:metadata":{"f:finalizers":{"v:-9":{},"v:-10":{},"v:-11":{},"v:3":{},"v:\"x\"":{},"v:null":{},"v:{\"a\":1}":{}}}}`,
		"indexes":                 `{"f:spec":{"f:atomic":{"i:10":{},"i:2":{},"i:1":{".":{},"f:x":{}}}}}`,
		"unknown element kinds":   `{"f:spec":{"z:later":{},"f:kept":{"z:later":{}},"f:parent":{"f:child":{"z:later":{}}}}}`,
		"a chain without members": `{"f:a":{"f:b":{"f:c":{"f:d":{}}},"f:e":{".":{},"f:f":{"f:g":{}}}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			want := fieldpath.NewSet()
			if err := want.FromJSON(strings.NewReader(raw)); err != nil {
				t.Fatal(err)
			}
			var decoded map[string]any
			if err := json.Unmarshal([]byte(raw), &decoded); err != nil {
				t.Fatal(err)
			}
			got, err := readFieldSet(decoded)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equals(want) {
				t.Errorf("read\n%s\nwant\n%s", got, want)
			}
		})
	}
	for _, bad := range []string{`{"f:a":1}`, `{"k:{broken":{}}`} {
		var decoded map[string]any
		if err := json.Unmarshal([]byte(bad), &decoded); err != nil {
			t.Fatal(err)
		}
		if _, err := readFieldSet(decoded); err == nil {
			t.Errorf("%s was read without an error", bad)
		}
	}
}

// TestAnEntryLargerThanTheObjectCouldMakeIsWrittenAgain: alumiini's entry
// names no more fields than the object it applies holds; one far larger
// was written by someone else (an Update may write managedFields), reads as
// unreadable after a bounded look, and the object is applied again, which
// replaces it. A chain of levels without members, too deep for the object,
// stops as early.
func TestAnEntryLargerThanTheObjectCouldMakeIsWrittenAgain(t *testing.T) {
	git := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "settings"}, "data": map[string]any{"version": "1"}}}
	limit := ownEntryLimit(git)
	asApplied := fieldpath.NewSet(fieldpath.MakePathOrDie("data", "version"))
	if own := ownFields(ownedBy(asApplied), limit); !own.readable || !own.fields.Equals(asApplied) {
		t.Fatalf("alumiini's true entry: %+v", own)
	}
	forged := asApplied.Union(fieldpath.NewSet())
	for i := range limit {
		forged.Insert(fieldpath.MakePathOrDie("metadata", "finalizers", fmt.Sprint(i)))
	}
	deep := fieldpath.MakePathOrDie("data", "version")
	for range 5000 {
		deep = append(deep, fieldpath.PathElement{FieldName: ptr.To("f")})
	}
	for name, set := range map[string]*fieldpath.Set{"wide": forged, "deep": asApplied.Union(fieldpath.NewSet(deep))} {
		live := ownedBy(set)
		if own := ownFields(live, limit); own.readable {
			t.Errorf("a %s entry of %d elements read as alumiini's for an object of %d", name, set.Size(), limit)
		}
		if !ownershipLost(ownFields(live, limit), ownFields(ownedBy(asApplied), limit), nil) {
			t.Errorf("an object with a %s forged entry is not applied again", name)
		}
	}
}

// BenchmarkReadingAnOutOfOrderFieldSet: whoever may update an applied
// object may write alumiini's entry: 90,000 negative numbers of one length,
// which JSON decoding puts in the reverse of structured-merge-diff's order
// (its reader took 20 s, at each comparison).
func BenchmarkReadingAnOutOfOrderFieldSet(b *testing.B) {
	var raw strings.Builder
	raw.WriteString(`{"f:metadata":{"f:finalizers":{`)
	for i := range 90_000 {
		if i > 0 {
			raw.WriteString(",")
		}
		fmt.Fprintf(&raw, `"v:%d":{}`, -99999+i)
	}
	raw.WriteString(`}}}`)
	live := &unstructured.Unstructured{}
	wire := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","managedFields":[`+
		`{"manager":%q,"operation":"Apply","apiVersion":"v1","fieldsType":"FieldsV1","fieldsV1":%s}]}}`, FieldManager, raw.String())
	if err := live.UnmarshalJSON([]byte(wire)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if own := ownFields(live, math.MaxInt); !own.readable || own.fields.Size() != 90_000 {
			b.Fatal("the set was not read")
		}
	}
}

// BenchmarkReadingDeepChains: 21 chains of levels without members, 9,000
// deep, as an Update may write into alumiini's entry (17 s to read when each
// level asked its set whether it held anything). ownEntryLimit stops such
// an entry on an object of ordinary size long before; this reads it whole.
func BenchmarkReadingDeepChains(b *testing.B) {
	var raw strings.Builder
	raw.WriteString("{")
	for chain := range 21 {
		if chain > 0 {
			raw.WriteString(",")
		}
		fmt.Fprintf(&raw, `"f:c%d":`, chain)
		raw.WriteString(strings.Repeat(`{"f:":`, 9000) + "{}" + strings.Repeat("}", 9000))
	}
	raw.WriteString("}")
	var decoded map[string]any
	if err := json.Unmarshal([]byte(raw.String()), &decoded); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := readFieldSet(decoded); err != nil {
			b.Fatal(err)
		}
	}
}
