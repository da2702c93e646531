package drift

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestAnObjectReadWholeFingerprintsAsItsMetadata: the drift watch and a
// write's metadata answer carry managedFields as kube-apiserver sent them,
// while an object read whole (an unchanged object's live copy, the
// rolloutRef's answer) has them written back from JSON maps. Both must sum
// the same, or such an object looks drifted at every watch event.
func TestAnObjectReadWholeFingerprintsAsItsMetadata(t *testing.T) {
	for name, raw := range map[string]string{
		// A built-in kind: list keys ordered by value, 80 before 443.
		"ports 80 and 443 of a built-in kind": `{"f:spec":{"f:ports":{` +
			`"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{}},` +
			`"k:{\"port\":443,\"protocol\":\"TCP\"}":{".":{},"f:port":{}}}}}`,
		// A custom resource, stored as JSON: keys sorted as strings, & escaped.
		"a custom resource's keys": `{"f:spec":{"f:items":{"k:{\"id\":10}":{},"k:{\"id\":9}":{}},` +
			`"f:labels":{"f:a\u0026b":{},"f:a\u003cb":{}},"f:sizes":{"v:9007199254740993":{}}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			meta := withFields(raw)
			if Fingerprint(decodedWhole(t, meta)) != Fingerprint(meta) {
				t.Error("the same fields, read whole and as metadata, fingerprint differently")
			}
		})
	}
	meta := withFields(`{"f:spec":{"f:ports":{"k:{\"port\":80,\"protocol\":\"TCP\"}":{},"k:{\"port\":443,\"protocol\":\"TCP\"}":{}}}}`)
	onePort := withFields(`{"f:spec":{"f:ports":{"k:{\"port\":80,\"protocol\":\"TCP\"}":{}}}}`)
	if Fingerprint(decodedWhole(t, onePort)) == Fingerprint(meta) {
		t.Error("a port less, read whole, left the fingerprint alone")
	}
	bigger := withFields(`{"f:spec":{"f:sizes":{"v:9007199254740992":{}}}}`)
	if Fingerprint(bigger) == Fingerprint(withFields(`{"f:spec":{"f:sizes":{"v:9007199254740993":{}}}}`)) {
		t.Error("two numbers past 2^53 summed alike: the keys' numbers were parsed")
	}
}

// withFields is deployment(1) with alumiini's field set raw.
func withFields(raw string) *metav1.PartialObjectMetadata {
	meta := deployment(1)
	meta.ManagedFields[0].FieldsV1 = &metav1.FieldsV1{Raw: []byte(raw)}
	return meta
}

// decodedWhole is meta as the dynamic client decodes an object: JSON maps.
func decodedWhole(t testing.TB, meta *metav1.PartialObjectMetadata) *unstructured.Unstructured {
	t.Helper()
	fields, err := runtime.DefaultUnstructuredConverter.ToUnstructured(meta)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: fields}
}

// BenchmarkFingerprint reports what summing a typical Deployment's
// managedFields costs: as metadata at every drift watch event and write,
// whole for an unchanged object at a sync (which includes reading the
// managedFields out of the JSON maps).
func BenchmarkFingerprint(b *testing.B) {
	meta := deployment(1)
	for name, obj := range map[string]metav1.Object{"metadata": meta, "whole": decodedWhole(b, meta)} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				Fingerprint(obj)
			}
		})
	}
}

// TestAHugeFieldSetIsNotDecoded: whoever may update a labelled object can
// give it megabytes of managedFields, summed at each of its watch events on
// the informer's one goroutine; a set over maxSortedFieldsBytes is summed as
// it came rather than decoded into maps (at worst a needless dry-run).
func TestAHugeFieldSetIsNotDecoded(t *testing.T) {
	var set strings.Builder
	set.WriteString(`{"f:spec":{"f:sizes":{`)
	for i := range 50_000 {
		if i > 0 {
			set.WriteString(",")
		}
		fmt.Fprintf(&set, `"v:%d":{}`, i)
	}
	set.WriteString(`}}}`)
	meta := withFields(set.String())
	if allocs := testing.AllocsPerRun(3, func() { Fingerprint(meta) }); allocs > 100 {
		t.Errorf("summing a %d KiB field set took %.0f allocations: it was decoded", set.Len()>>10, allocs)
	}

	// Nor are many sets each under the bound: the bound is the object's (an
	// attacker review's 22 sets of 64 KiB took 103 ms per watch event).
	var fields strings.Builder
	fields.WriteString(`{"f:spec":{`)
	for i := 0; fields.Len() < maxSortedFieldsBytes-64; i++ {
		if i > 0 {
			fields.WriteString(",")
		}
		fmt.Fprintf(&fields, `"f:%d":{}`, i)
	}
	fields.WriteString(`}}`)
	one := withFields(fields.String())
	many := withFields(fields.String())
	for i := range 21 {
		many.ManagedFields = append(many.ManagedFields, metav1.ManagedFieldsEntry{Manager: fmt.Sprintf("writer-%d", i),
			Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(fields.String())}})
	}
	decoded := testing.AllocsPerRun(3, func() { Fingerprint(one) })
	if allocs := testing.AllocsPerRun(3, func() { Fingerprint(many) }); allocs > 2*decoded {
		t.Errorf("22 field sets of %d KiB took %.0f allocations, one %.0f: each was decoded", fields.Len()>>10, allocs, decoded)
	}
	// Nor are thousands of tiny sets (an Update may add apply entries).
	tiny := withFields(`{"f:spec":{"f:x":{}}}`)
	for i := range 20_000 {
		tiny.ManagedFields = append(tiny.ManagedFields, metav1.ManagedFieldsEntry{Manager: fmt.Sprintf("writer-%d", i),
			Operation: metav1.ManagedFieldsOperationApply, APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:x":{}}}`)}})
	}
	perSet := testing.AllocsPerRun(3, func() { Fingerprint(withFields(`{"f:spec":{"f:x":{}}}`)) })
	if allocs := testing.AllocsPerRun(3, func() { Fingerprint(tiny) }); allocs > 1000*perSet {
		t.Errorf("20,000 tiny field sets took %.0f allocations, one %.0f: each was decoded", allocs, perSet)
	}
	changed := many.DeepCopy()
	last := &changed.ManagedFields[len(changed.ManagedFields)-1]
	last.FieldsV1 = &metav1.FieldsV1{Raw: []byte(strings.Replace(fields.String(), `"f:0"`, `"f:other"`, 1))}
	if Fingerprint(changed) == Fingerprint(many) {
		t.Error("a set past the bound changed, and the fingerprint did not")
	}
}

// TestOnlyAlumiinisOwnApplyTimeCounts: an apply under alumiini's field
// manager name that changes values, not fields, moves only the time of
// alumiini's entry, and must change the fingerprint; other managers' times
// (a controller's status or annotation writes) must not.
func TestOnlyAlumiinisOwnApplyTimeCounts(t *testing.T) {
	later := func(meta *metav1.PartialObjectMetadata, entry int) *metav1.PartialObjectMetadata {
		at := metav1.NewTime(meta.ManagedFields[entry].Time.Add(time.Second))
		meta.ManagedFields[entry].Time = &at
		return meta
	}
	if Fingerprint(later(deployment(1), 0)) == Fingerprint(deployment(1)) {
		t.Error("alumiini's apply entry a second later left the fingerprint alone")
	}
	for _, other := range []int{1, 2} {
		if Fingerprint(later(deployment(1), other)) != Fingerprint(deployment(1)) {
			t.Errorf("entry %d (%s, %s) a second later changed the fingerprint", other,
				deployment(1).ManagedFields[other].Manager, deployment(1).ManagedFields[other].Subresource)
		}
	}
	// An update under alumiini's name is an entry of its own (operation
	// Update), already summed by its fields; its time does not count.
	updatedAsAlumiini := func() *metav1.PartialObjectMetadata {
		meta := deployment(1)
		meta.ManagedFields[1].Manager = "alumiini"
		return meta
	}
	if Fingerprint(later(updatedAsAlumiini(), 1)) != Fingerprint(updatedAsAlumiini()) {
		t.Error("an Update entry under alumiini's name a second later changed the fingerprint")
	}
}
