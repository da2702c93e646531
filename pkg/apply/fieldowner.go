package apply

import (
	"bytes"
	"slices"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/value"
)

// takesFieldsBack reports whether applying would give alumiini's field
// manager a field the live object no longer gives it, one not ignored.
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
// them again; counting them would write after every scaling.
func takesFieldsBack(live, dry *unstructured.Unstructured, ignored [][]string) bool {
	after, afterVersion, ok := ownFields(dry)
	if !ok {
		return false // nothing to judge by; a write would not change that
	}
	before, beforeVersion, ok := ownFields(live)
	switch {
	case !ok:
		return true // live managedFields we cannot read: write them anew
	case beforeVersion != "" && beforeVersion != afterVersion:
		// Sets of two versions name fields differently (git changed the
		// object's apiVersion): not comparable.
		return false
	}
	taken := false
	after.Difference(before).Iterate(func(p fieldpath.Path) {
		if !taken && !isIgnored(p, live.Object, ignored) {
			taken = true
		}
	})
	return taken
}

// ownFields is the field set of alumiini's apply entry and its apiVersion
// (empty when it has none), false when that set cannot be read.
func ownFields(obj *unstructured.Unstructured) (*fieldpath.Set, string, bool) {
	set := fieldpath.NewSet()
	for _, m := range obj.GetManagedFields() {
		if m.Manager != FieldManager || m.Operation != metav1.ManagedFieldsOperationApply || m.Subresource != "" {
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

// ignoredPointers are the tokens of every ignored path of u.
func ignoredPointers(u *unstructured.Unstructured, rules []IgnoreRule) [][]string {
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

// isIgnored says whether the field at p lies within an ignored path, or is
// a list item or map holding one. p's list items (by key or value) become
// positions in obj, as ignore rules name them; an item obj lacks is not
// ignored.
func isIgnored(p fieldpath.Path, obj map[string]any, ignored [][]string) bool {
	if len(ignored) == 0 {
		return false
	}
	tokens, ok := pointerOf(p, obj)
	if !ok {
		return false
	}
	for _, ig := range ignored {
		n := min(len(ig), len(tokens))
		if slices.Equal(ig[:n], tokens[:n]) {
			return true
		}
	}
	return false
}

// pointerOf turns a field path into JSON pointer tokens, finding each list
// item's position in obj.
func pointerOf(p fieldpath.Path, obj map[string]any) ([]string, bool) {
	tokens := make([]string, 0, len(p))
	var node any = obj
	for _, pe := range p {
		switch {
		case pe.FieldName != nil:
			m, _ := node.(map[string]any)
			tokens, node = append(tokens, *pe.FieldName), m[*pe.FieldName]
		case pe.Index != nil:
			list, _ := node.([]any)
			if *pe.Index < 0 || *pe.Index >= len(list) {
				return nil, false
			}
			tokens, node = append(tokens, strconv.Itoa(*pe.Index)), list[*pe.Index]
		default:
			list, _ := node.([]any)
			i := slices.IndexFunc(list, func(item any) bool { return matchesItem(pe, item) })
			if i < 0 {
				return nil, false
			}
			tokens, node = append(tokens, strconv.Itoa(i)), list[i]
		}
	}
	return tokens, true
}

// matchesItem says whether a list item is the one pe names by its key
// fields or its value.
func matchesItem(pe fieldpath.PathElement, item any) bool {
	if pe.Value != nil {
		return value.Equals(*pe.Value, value.NewValueInterface(item))
	}
	m, ok := item.(map[string]any)
	if !ok || pe.Key == nil {
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
