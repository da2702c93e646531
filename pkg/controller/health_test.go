package controller

import (
	"context"
	"testing"
	"time"

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

// TestAPanickingHealthWaitEndsAloneAndTheNextOneRuns: a health wait runs
// outside the worker's crash recovery; a panic in it (judging a tenant's
// odd live object) ends that wait, not the process, and the next sync's
// wait for the same GitRepository runs.
func TestAPanickingHealthWaitEndsAloneAndTheNextOneRuns(t *testing.T) {
	var waits healthWaits
	waits.start(context.Background(), "team/apps", func(context.Context, func() bool) { panic("kstatus on an odd object") })
	running := func() bool {
		waits.mu.Lock()
		defer waits.mu.Unlock()
		return waits.running["team/apps"] != nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for running() {
		if time.Now().After(deadline) {
			t.Fatal("the panicked wait is still counted as running")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ran := make(chan struct{})
	waits.start(context.Background(), "team/apps", func(context.Context, func() bool) { close(ran) })
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("the next wait did not run")
	}
}
