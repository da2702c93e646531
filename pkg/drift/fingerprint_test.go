package drift

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// twoPorts is metadata whose managedFields hold two ports keyed by value,
// as a Service's spec.ports, in kube-apiserver's order: 80 before 443.
func twoPorts() *metav1.PartialObjectMetadata {
	meta := deployment(1)
	meta.ManagedFields[0].FieldsV1 = &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:ports":{` +
		`"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{}},` +
		`"k:{\"port\":443,\"protocol\":\"TCP\"}":{".":{},"f:port":{}}}}}`)}
	return meta
}

// TestAnObjectReadWholeFingerprintsAsItsMetadata: the drift watch and a
// write's metadata answer carry managedFields as kube-apiserver ordered
// them, while an object read whole (an unchanged object's live copy, the
// rolloutRef's answer) has them written back with sorted keys. Both must
// sum the same, or such an object looks drifted at every watch event.
func TestAnObjectReadWholeFingerprintsAsItsMetadata(t *testing.T) {
	meta := twoPorts()
	whole := decodedWhole(t, meta)
	if got := string(whole.GetManagedFields()[0].FieldsV1.Raw); got == string(meta.ManagedFields[0].FieldsV1.Raw) {
		t.Fatalf("the whole object kept the server's order (%s): this test no longer shows the difference", got)
	}
	if Fingerprint(whole) != Fingerprint(meta) {
		t.Error("the same fields, read whole and as metadata, fingerprint differently")
	}
	onePort := twoPorts()
	onePort.ManagedFields[0].FieldsV1.Raw = []byte(`{"f:spec":{"f:ports":{"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{}}}}}`)
	if Fingerprint(decodedWhole(t, onePort)) == Fingerprint(meta) {
		t.Error("a port less, read whole, left the fingerprint alone")
	}
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
// whole for an unchanged object at a sync.
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
