package apply

import (
	"bytes"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/value"
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
func ownershipLost(live, dry *unstructured.Unstructured, ignored [][]string) bool {
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
	if len(ignored) > 0 && !lost.Empty() {
		lost = lost.RecursiveDifference(ignoredWithin(lost, live.Object, ignored))
	}
	return !lost.Empty()
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

// ignoredTokens are the JSON pointers, split into tokens, of every ignored
// path of u.
func ignoredTokens(u *unstructured.Unstructured, rules []IgnoreRule) [][]string {
	var pointers [][]string
	for _, r := range rules {
		if !r.matches(u) {
			continue
		}
		for _, p := range r.Paths {
			if tokens := pointerTokens(p); len(tokens) > 0 {
				pointers = append(pointers, tokens)
			}
		}
	}
	return pointers
}

// ignoredWithin is the paths of set that the ignored pointers name in obj:
// a pointer's list positions become the set's own elements for those items
// (by key, value or index). Each pointer is resolved once, a list's items
// scanned at most once, so a tenant's long list costs linear time.
func ignoredWithin(set *fieldpath.Set, obj map[string]any, ignored [][]string) *fieldpath.Set {
	paths := fieldpath.NewSet()
	for _, tokens := range ignored {
		if path, ok := pathWithin(set, obj, tokens); ok {
			paths.Insert(path)
		}
	}
	return paths
}

// pathWithin resolves pointer tokens to a path of set, false when set holds
// nothing at or under it.
func pathWithin(set *fieldpath.Set, obj map[string]any, tokens []string) (fieldpath.Path, bool) {
	path := make(fieldpath.Path, 0, len(tokens))
	var node any = obj
	level := set
	for i, token := range tokens {
		var pe fieldpath.PathElement
		switch n := node.(type) {
		case map[string]any:
			pe, node = fieldpath.FieldNameElement(token), n[token]
		case []any:
			index, err := strconv.Atoi(token)
			if err != nil || index < 0 || index >= len(n) {
				return nil, false
			}
			found := false
			if pe, found = elementOf(level, n[index], index); !found {
				return nil, false
			}
			node = n[index]
		default:
			return nil, false
		}
		path = append(path, pe)
		if i == len(tokens)-1 {
			return path, true
		}
		next, ok := level.Children.Get(pe)
		if !ok {
			return nil, false // nothing below it in set, or owned whole
		}
		level = next
	}
	return nil, false
}

// elementOf finds the element of set's top level that names a list item
// (by its key fields, its value or its index).
func elementOf(set *fieldpath.Set, item any, index int) (fieldpath.PathElement, bool) {
	var found fieldpath.PathElement
	ok := false
	look := func(pe fieldpath.PathElement) {
		if !ok && namesItem(pe, item, index) {
			found, ok = pe, true
		}
	}
	set.Children.Iterate(look)
	set.Members.Iterate(look)
	return found, ok
}

func namesItem(pe fieldpath.PathElement, item any, index int) bool {
	switch {
	case pe.Index != nil:
		return *pe.Index == index
	case pe.Value != nil:
		return value.Equals(*pe.Value, value.NewValueInterface(item))
	case pe.Key != nil:
		m, ok := item.(map[string]any)
		if !ok {
			return false
		}
		for _, f := range *pe.Key {
			v, ok := m[f.Name]
			if !ok || !value.Equals(f.Value, value.NewValueInterface(v)) {
				return false
			}
		}
		return true
	}
	return false
}
