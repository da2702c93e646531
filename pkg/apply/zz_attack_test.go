package apply

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestZZForgedFieldManagerKeepsTheObject(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	owner := Owner{Namespace: "default", Name: "keeper"}
	ctx := context.Background()
	first, err := a.Apply(ctx, owner, render(t, "victim.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: victim\n"), Options{DefaultNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	// kubectl annotate configmap victim alumiini.false.systems/prune=disabled --field-manager=alumiini
	patch := []byte(`{"metadata":{"annotations":{"alumiini.false.systems/prune":"disabled"}}}`)
	if _, err := a.Client.Resource(configMaps).Namespace(ns).Patch(ctx, "victim", types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: "alumiini"}); err != nil {
		t.Fatal(err)
	}
	result, err := a.Apply(ctx, owner, nil, Options{DefaultNamespace: ns, Prune: true, Previous: first.Inventory})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pruned %d, released %v, inventory %v", result.Pruned, result.Released, result.Inventory)
	live, err := a.Client.Resource(configMaps).Namespace(ns).Get(ctx, "victim", metav1.GetOptions{})
	t.Logf("after prune: err=%v labels=%v annotations=%v", err, live.GetLabels(), live.GetAnnotations())
}
