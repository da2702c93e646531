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
//
// live and after are alumiini's entries of the live object and of the
// dry-run's answer (ownFields).
func ownershipLost(live, after ownEntry, ignored []ignoredField) bool {
	if !after.readable {
		return false // nothing to judge by; a write would not change that
	}
	switch {
	case !live.readable:
		return true // live managedFields we cannot read: write them anew
	case live.apiVersion != "" && live.apiVersion != after.apiVersion:
		// An apply under alumiini's name through another version of the
		// kind (a tenant's, or a commit that changed the apiVersion): its
		// set cannot be compared, and one write puts git's version back.
		return true
	}
	lost := after.fields.Difference(live.fields)
	excused := fieldpath.NewSet()
	for _, f := range ignored {
		if f.path != nil {
			excused.Insert(f.path)
		}
	}
	return !lost.RecursiveDifference(excused).Empty()
}

// ownEntry is alumiini's apply entry of an object: its field set and
// apiVersion (empty when it has none); not readable when its set cannot be
// read, or is larger than the object alumiini applies could make it.
type ownEntry struct {
	fields     *fieldpath.Set
	apiVersion string
	readable   bool
}

// ownFields reads alumiini's apply entry of obj, of at most limit
// elements (ownEntryLimit).
func ownFields(obj *unstructured.Unstructured, limit int) ownEntry {
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
			return ownEntry{}
		}
		reader := fieldSetReader{left: limit}
		set, _, err := reader.read(fields)
		if err != nil {
			return ownEntry{}
		}
		return ownEntry{fields: set, apiVersion: version, readable: true}
	}
	return ownEntry{fields: fieldpath.NewSet(), readable: true}
}

// ownEntryLimit bounds the elements of alumiini's apply entry of desired,
// git's object as applied: its entry names no more fields than desired holds
// (one element for each), so an entry far larger is forged (an Update may
// write it: a tenant's 1.4 MiB entry took seconds to read at each
// comparison, and the object, found unchanged, kept it). Such an entry reads
// as unreadable, and one write replaces it with the true one.
func ownEntryLimit(desired *unstructured.Unstructured) int {
	return 4*nodes(desired.Object) + 1024
}

// nodes counts the fields, list items and values in v.
func nodes(v any) int {
	n := 1
	switch v := v.(type) {
	case map[string]any:
		for _, child := range v {
			n += nodes(child)
		}
	case []any:
		for _, child := range v {
			n += nodes(child)
		}
	}
	return n
}

// errFieldSetTooLarge: a field set has more elements than its limit.
var errFieldSetTooLarge = errors.New("the field set has more elements than the object could give it")

// fieldSetReader reads field sets (managedFields' fieldsV1) decoded from
// JSON, in O(n log n), up to left elements. structured-merge-diff's own
// reader appends an element in O(1) only when the elements come in its
// order, and otherwise inserts it into the middle of a slice: decoded from
// JSON, keys come sorted as strings, and numbers then come in another order
// (negative ones of one length in reverse), so a tenant's 90,000-element
// set (an Update may write alumiini's entry) took 20 s to read, at each
// comparison (attacker review). Here each level is sorted first and then
// appended in order.
type fieldSetReader struct {
	left int
}

// read reads one level and what it holds, and says whether that is
// anything: asking the set (Set.Empty walks down to a member) made a chain
// of levels without members quadratic in its depth (a second review's
// 21 chains of depth 9,890: 17 s).
func (r *fieldSetReader) read(level map[string]any) (*fieldpath.Set, bool, error) {
	type element struct {
		pe       fieldpath.PathElement
		children map[string]any
	}
	if r.left -= len(level); r.left < 0 {
		return nil, false, errFieldSetTooLarge
	}
	// Sorted as strings, most levels are in structured-merge-diff's order
	// already (numbers differ), so the sort below rarely runs.
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
			return nil, false, fmt.Errorf("reading field set key %.64q: %w", key, err)
		}
		children, ok := v.(map[string]any)
		if !ok {
			return nil, false, fmt.Errorf("field set key %.64q holds a %T, not an object", key, v)
		}
		elements = append(elements, element{pe, children})
	}
	byElement := func(a, b element) int { return a.pe.Compare(b.pe) }
	if !slices.IsSortedFunc(elements, byElement) {
		slices.SortFunc(elements, byElement)
	}
	set, holds := fieldpath.NewSet(), false
	for _, e := range elements {
		children, childrenHold, err := r.read(e.children)
		if err != nil {
			return nil, false, err
		}
		if _, member := e.children["."]; member || !childrenHold {
			set.Members.Insert(e.pe) // appended: the elements are sorted
		}
		if childrenHold {
			*set.Children.Descend(e.pe) = *children
		}
		holds = true
	}
	return set, holds, nil
}
