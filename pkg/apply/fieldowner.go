package apply

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

// IsOwnApplyEntry says whether a managedFields entry is alumiini's own
// apply of the object (not of a subresource).
func IsOwnApplyEntry(m metav1.ManagedFieldsEntry) bool {
	return m.Manager == FieldManager && m.Operation == metav1.ManagedFieldsOperationApply && m.Subresource == ""
}

// ownershipLost reports whether applying would give alumiini's field manager
// a field, not an ignored one, that its live apply entry lacks.
//
// Drift between commits is noticed by who owns which fields (pkg/drift), so
// a field alumiini no longer owns can change unseen: whoever may write the
// object applies git's value under another manager (sharing the field), then
// applies under alumiini's name without it, and the values still match git.
// Such an object is written, so that alumiini owns every field it applies
// and a later change to one moves its ownership again.
//
// Ignored fields are left out: keepIgnored applies their live value, so
// alumiini takes them back at each apply, and an autoscaler's write takes
// them again; counting them would write after every scaling. A field owned
// whole (an atomic list or map) that merely holds an ignored path still
// counts: leaving it out would hide every other value in it.
func ownershipLost(live, dry *unstructured.Unstructured, ignored []ignoredField) bool {
	after, afterVersion, ok := ownFields(dry)
	if !ok {
		return false // nothing to judge by; a write would not change that
	}
	before, beforeVersion, ok := ownFields(live)
	switch {
	case !ok:
		return true // live managedFields we cannot read: write them anew
	case beforeVersion != "" && beforeVersion != afterVersion:
		// An apply under alumiini's name through another version of the
		// kind (a tenant's, or a commit that changed the apiVersion): its
		// set cannot be compared, and one write puts git's version back.
		return true
	}
	lost := after.Difference(before)
	excused := fieldpath.NewSet()
	for _, f := range ignored {
		if f.path != nil {
			excused.Insert(f.path)
		}
	}
	return !lost.RecursiveDifference(excused).Empty()
}

// ownFields is the field set of alumiini's apply entry and its apiVersion
// (empty when it has none), false when that set cannot be read.
func ownFields(obj *unstructured.Unstructured) (*fieldpath.Set, string, bool) {
	entries, _, _ := unstructured.NestedFieldNoCopy(obj.Object, "metadata", "managedFields")
	list, _ := entries.([]any)
	for _, e := range list {
		entry, _ := e.(map[string]any)
		manager, _, _ := unstructured.NestedString(entry, "manager")
		operation, _, _ := unstructured.NestedString(entry, "operation")
		subresource, _, _ := unstructured.NestedString(entry, "subresource")
		if !IsOwnApplyEntry(metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationType(operation), Subresource: subresource}) {
			continue
		}
		version, _, _ := unstructured.NestedString(entry, "apiVersion")
		fields, ok := entry["fieldsV1"].(map[string]any)
		if !ok && entry["fieldsV1"] != nil {
			return nil, "", false
		}
		set, err := fieldSetOf(fields)
		if err != nil {
			return nil, "", false
		}
		return set, version, true
	}
	return fieldpath.NewSet(), "", true
}

// fieldSetOf reads a field set (managedFields' fieldsV1) decoded from JSON,
// in O(n log n). structured-merge-diff's own reader appends an element in
// O(1) only when the elements come in its order, and otherwise inserts it
// into the middle of a slice: decoded from JSON, keys come sorted as
// strings, and numbers then come in another order (negative ones of one
// length in reverse), so a tenant's 90,000-element set (an Update may write
// alumiini's entry) took 20 s to read, at each comparison (attacker review).
// Here each level is sorted first and then appended in order.
func fieldSetOf(level map[string]any) (*fieldpath.Set, error) {
	type element struct {
		pe       fieldpath.PathElement
		children map[string]any
	}
	// In the order structured-merge-diff writes, as the server's bytes come,
	// keys sorted as strings are in its order but for numbers: sorted as
	// strings first, a set is rarely sorted again.
	keys := slices.Sorted(maps.Keys(level))
	elements := make([]element, 0, len(level))
	for _, key := range keys {
		v := level[key]
		if key == "." {
			continue
		}
		pe, err := fieldpath.DeserializePathElement(key)
		if errors.Is(err, fieldpath.ErrUnknownPathElementType) {
			continue // as structured-merge-diff does: a later version may know it
		}
		if err != nil {
			return nil, fmt.Errorf("reading field set key %.64q: %w", key, err)
		}
		children, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("field set key %.64q holds a %T, not an object", key, v)
		}
		elements = append(elements, element{pe, children})
	}
	byElement := func(a, b element) int { return a.pe.Compare(b.pe) }
	if !slices.IsSortedFunc(elements, byElement) {
		slices.SortFunc(elements, byElement)
	}
	set := fieldpath.NewSet()
	for _, e := range elements {
		children, err := fieldSetOf(e.children)
		if err != nil {
			return nil, err
		}
		_, member := e.children["."]
		if member || children.Empty() {
			set.Members.Insert(e.pe) // appended: the elements are sorted
		}
		if !children.Empty() {
			*set.Children.Descend(e.pe) = *children
		}
	}
	return set, nil
}
