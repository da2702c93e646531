package drift

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/falsesystems/alumiini/pkg/apply"
)

// deployment returns the metadata a watch receives of a typical applied
// Deployment: our labels, a few annotations, and managedFields of alumiini,
// the deployment controller and its status writes.
func deployment(i int) *metav1.PartialObjectMetadata {
	fields := func(s string) *metav1.FieldsV1 { return &metav1.FieldsV1{Raw: []byte(s)} }
	now := metav1.NewTime(time.Unix(1_700_000_000, 0))
	return &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("web-%05d", i), Namespace: fmt.Sprintf("team-%03d", i%100), UID: "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
			ResourceVersion: "123456", Generation: 3, CreationTimestamp: now,
			Labels: map[string]string{apply.LabelName: "apps", apply.LabelNamespace: "team", "app": "web"},
			Annotations: map[string]string{apply.AnnotationOwner: "team/apps", "deployment.kubernetes.io/revision": "3",
				"description": "the web frontend of the team's shop, replicated three times"},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "alumiini", Operation: metav1.ManagedFieldsOperationApply, APIVersion: "apps/v1", Time: &now, FieldsType: "FieldsV1",
					FieldsV1: fields(`{"f:metadata":{"f:annotations":{"f:alumiini.false.systems/gitrepository":{}},"f:labels":{"f:alumiini.false.systems/name":{},"f:alumiini.false.systems/namespace":{},"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}`)},
				{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "apps/v1", Time: &now, FieldsType: "FieldsV1",
					FieldsV1: fields(`{"f:metadata":{"f:annotations":{".":{},"f:deployment.kubernetes.io/revision":{}}}}`)},
				{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "apps/v1", Time: &now, FieldsType: "FieldsV1",
					Subresource: "status", FieldsV1: fields(`{"f:status":{"f:availableReplicas":{},"f:conditions":{".":{},"k:{\"type\":\"Available\"}":{".":{},"f:lastTransitionTime":{},"f:lastUpdateTime":{},"f:message":{},"f:reason":{},"f:status":{},"f:type":{}}},"f:observedGeneration":{},"f:readyReplicas":{},"f:replicas":{},"f:updatedReplicas":{}}}`)},
			},
		},
	}
}

// BenchmarkWatchedObjectBytes reports what the drift watch keeps per managed
// object (the shrunk copy in the informer's store), against what keeping the
// metadata as received would cost.
func BenchmarkWatchedObjectBytes(b *testing.B) {
	const n = 20000
	w := &Watcher{}
	for _, shrink := range []bool{false, true} {
		name := "as-received"
		if shrink {
			name = "shrunk"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				store := cache.NewStore(cache.MetaNamespaceKeyFunc)
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				for i := range n {
					var obj any = deployment(i)
					if shrink {
						obj, _ = w.shrink(obj)
					}
					if err := store.Add(obj); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/object")
				runtime.KeepAlive(store)
			}
		})
	}
}

func TestShrinkKeepsOnlyWhatDriftNeeds(t *testing.T) {
	w := &Watcher{}
	small, _ := w.shrink(deployment(1))
	meta := small.(*metav1.PartialObjectMetadata)
	if len(meta.ManagedFields) != 0 || meta.Annotations["description"] != "" || len(meta.Labels) != 0 {
		t.Errorf("kept more than drift needs: %+v", meta.ObjectMeta)
	}
	again, _ := w.shrink(small)
	if again.(*metav1.PartialObjectMetadata).Annotations[annotationFingerprint] != meta.Annotations[annotationFingerprint] {
		t.Error("shrinking twice (client-go may) changed the fingerprint")
	}
	if meta.Annotations[annotationFingerprint] == "" || meta.ResourceVersion != "123456" || meta.Generation != 3 {
		t.Errorf("lost what drift needs: %+v", meta.ObjectMeta)
	}
	// A status write by a controller leaves the fingerprint alone; a hand
	// edit that takes a field from alumiini does not.
	statusWrite := deployment(1)
	statusWrite.ManagedFields[2].FieldsV1.Raw = []byte(`{"f:status":{"f:replicas":{}}}`)
	if Fingerprint(statusWrite) != Fingerprint(deployment(1)) {
		t.Error("a status write changed the fingerprint")
	}
	handEdit := deployment(1)
	handEdit.ManagedFields = append(handEdit.ManagedFields, metav1.ManagedFieldsEntry{Manager: "kubectl-edit",
		Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "apps/v1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:replicas":{}}}`)}})
	if Fingerprint(handEdit) == Fingerprint(deployment(1)) {
		t.Error("a hand edit left the fingerprint alone")
	}
	held := deployment(1)
	held.Annotations[apply.AnnotationSuspendHeal] = "true"
	if Fingerprint(held) == Fingerprint(deployment(1)) {
		t.Error("the break-glass annotation left the fingerprint alone")
	}
}

// TestWhatARestartedControllerChecks: with nothing remembered, an object is
// suspect when someone else wrote it after alumiini's last apply, an update
// under alumiini's name included (alumiini only applies what it tracks);
// the time of alumiini's own apply is kept for the controller to compare
// with its GitRepository's last write.
func TestWhatARestartedControllerChecks(t *testing.T) {
	w := &Watcher{}
	shrunk := func(meta *metav1.PartialObjectMetadata) Observed {
		small, _ := w.shrink(meta)
		return observed(small.(*metav1.PartialObjectMetadata))
	}
	seen := shrunk(deployment(1))
	if seen.ForeignWrite || !seen.OwnApplied.Equal(time.Unix(1_700_000_000, 0)) {
		t.Errorf("an object alumiini applied last: %+v", seen)
	}
	later := metav1.NewTime(time.Unix(1_700_000_060, 0))
	for _, manager := range []string{"kubectl-edit", apply.FieldManager} {
		edited := deployment(1)
		edited.ManagedFields = append(edited.ManagedFields, metav1.ManagedFieldsEntry{Manager: manager,
			Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "apps/v1", Time: &later,
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:paused":{}}}`)}})
		if !shrunk(edited).ForeignWrite {
			t.Errorf("an update by %q after alumiini's apply is not foreign", manager)
		}
	}
	reapplied := deployment(1)
	reapplied.ManagedFields[0].Time = &later
	if seen := shrunk(reapplied); seen.ForeignWrite || !seen.OwnApplied.Equal(later.Time) {
		t.Errorf("an apply under alumiini's name: %+v", seen)
	}
}

// TestTheWatchTellsStatusWritesAndGenerations: what a controller needs to
// tell a spec change no field set shows (an apply under alumiini's name in
// the second of its own) from another controller's write: whether the
// event changed any entry but alumiini's, whatever the entries' times say.
func TestTheWatchTellsStatusWritesAndGenerations(t *testing.T) {
	w := &Watcher{}
	shrink := func(meta *metav1.PartialObjectMetadata) *metav1.PartialObjectMetadata {
		small, _ := w.shrink(meta)
		return small.(*metav1.PartialObjectMetadata)
	}
	// A tenant's entry dated 2099 (an Update may write managedFields) is
	// in both versions: it says nothing of the write between them.
	forged := func() *metav1.PartialObjectMetadata {
		meta := deployment(1)
		future := metav1.NewTime(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC))
		meta.ManagedFields = append(meta.ManagedFields, metav1.ManagedFieldsEntry{Manager: "tenant", Operation: metav1.ManagedFieldsOperationUpdate,
			Subresource: "status", APIVersion: "apps/v1", Time: &future, FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:status":{}}`)}})
		return meta
	}
	before := shrink(forged())
	reapplied := forged()
	reapplied.Generation++
	if seen := observedChange(before, shrink(reapplied)); seen.OthersWrote || seen.Generation != 4 {
		t.Errorf("an apply under alumiini's name in its second: %+v", seen)
	}
	later := metav1.NewTime(time.Unix(1_700_000_001, 0))
	statusWritten := forged()
	statusWritten.ManagedFields[2].Time = &later
	if seen := observedChange(before, shrink(statusWritten)); !seen.OthersWrote {
		t.Errorf("a status write: %+v", seen)
	}
	// A forced apply under alumiini's name takes a field from another entry
	// (here the tenant's, made to share it): that entry shrinks, or goes.
	taken := forged()
	taken.Generation++
	taken.ManagedFields[3].FieldsV1 = &metav1.FieldsV1{Raw: []byte(`{}`)}
	gone := forged()
	gone.Generation++
	gone.ManagedFields = gone.ManagedFields[:3]
	for name, meta := range map[string]*metav1.PartialObjectMetadata{"shrinks": taken, "goes": gone} {
		if seen := observedChange(before, shrink(meta)); seen.OthersWrote {
			t.Errorf("a forced apply under alumiini's name whose taken field's entry %s looks like another writer's", name)
		}
	}
	added := forged()
	added.ManagedFields = append(added.ManagedFields, metav1.ManagedFieldsEntry{Manager: "kubectl-edit",
		Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "apps/v1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{}}`)}})
	if seen := observedChange(before, shrink(added)); !seen.OthersWrote {
		t.Errorf("a new writer's entry: %+v", seen)
	}
}

// TestTheClusterCannotWriteTheWatchsRecord: whoever may update an object
// can empty its managedFields and give it the annotations the watch keeps
// its record in; the watch still sums the object itself.
func TestTheClusterCannotWriteTheWatchsRecord(t *testing.T) {
	w := &Watcher{}
	meta := deployment(1)
	honest, _ := w.shrink(meta.DeepCopy())
	meta.ManagedFields = nil
	meta.Annotations = map[string]string{annotationFingerprint: observed(honest.(*metav1.PartialObjectMetadata)).Fingerprint}
	small, _ := w.shrink(meta)
	if got := observed(small.(*metav1.PartialObjectMetadata)).Fingerprint; got != Fingerprint(meta) {
		t.Errorf("an object from the cluster carrying the watch's annotations was kept as they said: fingerprint %s", got)
	}
}

// TestManyWritersAreKeptSmall: an Update may add thousands of tiny
// managedFields entries; the watch keeps a bounded sum of them, and still
// tells a new writer's entry.
func TestManyWritersAreKeptSmall(t *testing.T) {
	w := &Watcher{}
	crowded := func(writers int) *metav1.PartialObjectMetadata {
		meta := deployment(1)
		for i := range writers {
			meta.ManagedFields = append(meta.ManagedFields, metav1.ManagedFieldsEntry{Manager: fmt.Sprintf("w%d", i),
				Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "apps/v1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{}`)}})
		}
		small, _ := w.shrink(meta)
		return small.(*metav1.PartialObjectMetadata)
	}
	before := crowded(14000)
	if kept := len(before.Annotations[annotationOthers]); kept > maxOthersEntries*20 {
		t.Errorf("14,000 writers' entries kept as %d bytes", kept)
	}
	if seen := observedChange(before, crowded(14001)); !seen.OthersWrote {
		t.Error("a new writer's entry among 14,000 went unseen")
	}
	if seen := observedChange(before, crowded(14000)); seen.OthersWrote {
		t.Error("the same 14,000 entries read as another write")
	}
}
