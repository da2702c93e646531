package apply

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// TestPruneDisabledKeepsTheObject: an object whose manifest says
// alumiini.false.systems/prune: disabled is kept when it leaves the
// repository, released (no longer labelled as ours), not deleted.
func TestPruneDisabledKeepsTheObject(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	owner := Owner{Namespace: "default", Name: "keeper"}
	ctx := context.Background()
	first, err := a.Apply(ctx, owner, render(t,
		"kept.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\n  annotations:\n    alumiini.false.systems/prune: disabled\n",
		"gone.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: gone\n",
		"stays.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stays\n"), Options{DefaultNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	if len(first.KeptByGit) != 1 || first.KeptByGit[0].Name != "kept" {
		t.Fatalf("kept by git: %v, want [kept]", first.KeptByGit)
	}
	result, err := a.Apply(ctx, owner, render(t, "stays.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stays\n"),
		Options{DefaultNamespace: ns, Prune: true, Previous: first.Inventory, KeptByGit: first.KeptByGit})
	if err != nil {
		t.Fatal(err)
	}
	if result.Pruned != 1 || len(result.Released) != 1 || result.Released[0].Name != "kept" {
		t.Errorf("pruned %d, released %v; want 1 and [kept]", result.Pruned, result.Released)
	}
	if len(result.Inventory) != 1 {
		t.Errorf("inventory %v, want only stays", result.Inventory)
	}
	kept, err := a.Client.Resource(configMaps).Namespace(ns).Get(ctx, "kept", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the object with prune disabled was deleted: %v", err)
	}
	if _, ours := kept.GetLabels()[LabelName]; ours {
		t.Errorf("the kept object is still labelled as ours: %v", kept.GetLabels())
	}
	if _, err := a.Client.Resource(configMaps).Namespace(ns).Get(ctx, "gone", metav1.GetOptions{}); err == nil {
		t.Error("the object without the annotation was not pruned")
	}

	// The annotation added by hand, not from git, keeps nothing, even
	// written under alumiini's field manager name (a client picks it).
	patch := []byte(`{"metadata":{"annotations":{"alumiini.false.systems/prune":"disabled"}}}`)
	if _, err := a.Client.Resource(configMaps).Namespace(ns).Patch(ctx, "stays", types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		t.Fatal(err)
	}
	result, err = a.Apply(ctx, owner, nil, Options{DefaultNamespace: ns, Prune: true, Previous: result.Inventory, KeptByGit: result.KeptByGit})
	if err != nil {
		t.Fatal(err)
	}
	if result.Pruned != 1 || len(result.Released) != 0 {
		t.Errorf("a hand-added annotation: pruned %d, released %v; want it pruned", result.Pruned, result.Released)
	}
}

// TestFailedDeletionsStayInTheInventory: an identity that may not delete
// prunes nothing, goes on past the first refusal, names every object it
// could not delete, and keeps them in the inventory to try again.
func TestFailedDeletionsStayInTheInventory(t *testing.T) {
	admin := newApplier(t)
	ns := namespace(t, admin)
	role := render(t,
		"role.yaml", "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: no-delete\nrules:\n"+
			"- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list, watch, create, update, patch]\n",
		"binding.yaml", "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: no-delete\n"+
			"roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: no-delete}\n"+
			"subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: no-delete}]\n")
	ctx := context.Background()
	if _, err := admin.Apply(ctx, Owner{Namespace: "default", Name: "rbac-" + ns}, role, Options{DefaultNamespace: ns}); err != nil {
		t.Fatal(err)
	}
	config := rest.CopyConfig(restConfig)
	config.Impersonate = rest.ImpersonationConfig{UserName: "no-delete"}
	a := newApplierAs(t, config)

	owner := Owner{Namespace: "default", Name: "stuck"}
	objects := render(t,
		"a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
		"b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n",
		"c.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n")
	var first *Result
	var err error
	// The new Role takes a moment to reach kube-apiserver's authorizer.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if first, err = a.Apply(ctx, owner, objects, Options{DefaultNamespace: ns}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	result, err := a.Apply(ctx, owner, render(t, "a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"),
		Options{DefaultNamespace: ns, Prune: true, Previous: first.Inventory})
	var perr *Error
	if !errors.As(err, &perr) || perr.Reason != ReasonPruneFailed {
		t.Fatalf("got %v, want a PruneFailed error", err)
	}
	for _, name := range []string{"/b", "/c", "2 objects could not be deleted"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("the error does not name %q: %v", name, err)
		}
	}
	if result == nil || len(result.PruneFailed) != 2 || len(result.Inventory) != 3 {
		t.Fatalf("result %+v: want b and c failed and kept in the inventory with a", result)
	}
}
