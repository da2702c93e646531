package controller

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// TestHealthWatchesKeepOnlyWhatKstatusReads: a watched object loses its
// data, annotations and managedFields, and kstatus judges it the same.
func TestHealthWatchesKeepOnlyWhatKstatusReads(t *testing.T) {
	for _, obj := range []map[string]any{
		{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "s", "namespace": "a",
			"annotations": map[string]any{"big": "x"}, "managedFields": []any{map[string]any{"manager": "alumiini"}}},
			"data": map[string]any{"password": "aHVudGVyMg=="}},
		{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "web", "namespace": "a", "generation": int64(2)},
			"spec":   map[string]any{"replicas": int64(1)},
			"status": map[string]any{"observedGeneration": int64(2), "replicas": int64(1), "updatedReplicas": int64(0)}},
	} {
		full := &unstructured.Unstructured{Object: obj}
		shrunk, err := shrinkForHealth(full.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		small := shrunk.(*unstructured.Unstructured)
		for _, gone := range []string{"data"} {
			if _, ok := small.Object[gone]; ok {
				t.Errorf("%s: %s kept", full.GetKind(), gone)
			}
		}
		if small.GetAnnotations() != nil || small.GetManagedFields() != nil {
			t.Errorf("%s: metadata kept: %v", full.GetKind(), small.Object["metadata"])
		}
		before, _ := status.Compute(full)
		after, _ := status.Compute(small)
		if before.Status != after.Status || before.Message != after.Message {
			t.Errorf("%s: kstatus %s (%s) on the whole object, %s (%s) shrunk", full.GetKind(), before.Status, before.Message,
				after.Status, after.Message)
		}
	}
}
