package apply

import (
	"bytes"

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
	set := fieldpath.NewSet()
	for _, m := range obj.GetManagedFields() {
		if !IsOwnApplyEntry(m) {
			continue
		}
		if m.FieldsV1 != nil {
			if err := set.FromJSON(bytes.NewReader(m.FieldsV1.Raw)); err != nil {
				return nil, "", false
			}
		}
		return set, m.APIVersion, true
	}
	return set, "", true
}
