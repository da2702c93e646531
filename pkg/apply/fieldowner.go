package apply

import (
	"bytes"
	"cmp"
	"slices"
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
func ownershipLost(live, dry, desired *unstructured.Unstructured, ignored [][]string) bool {
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
		lost = lost.RecursiveDifference(ignoredWithin(lost, live.Object, desired.Object, ignored))
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
// path of u, leaving out those within another (a tenant's long list under
// an ignored path would otherwise be scanned once per pointer into it).
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
	slices.SortFunc(pointers, func(a, b []string) int { return cmp.Compare(len(a), len(b)) })
	kept := pointers[:0]
	for _, p := range pointers {
		if !slices.ContainsFunc(kept, func(k []string) bool { return slices.Equal(k, p[:len(k)]) }) {
			kept = append(kept, p)
		}
	}
	return kept
}

// ignoredWithin is the paths of set that the ignored pointers name: a
// pointer's list positions become the set's own elements for those items
// (by key, value or index). A position names an item only where the live
// object and git's (desired, after keepIgnored) hold the same item there:
// keepIgnored gives git's item the live item's value at that position, and
// whoever may write the object chooses the live order, so otherwise a
// pointer could be steered onto an item it does not ignore. Each pointer
// scans a list's owned items at most once.
func ignoredWithin(set *fieldpath.Set, live, desired map[string]any, ignored [][]string) *fieldpath.Set {
	paths := fieldpath.NewSet()
	budget := maxItemLooks
	for _, tokens := range ignored {
		if path, ok := pathWithin(set, live, desired, tokens, &budget); ok {
			paths.Insert(path)
		}
	}
	return paths
}

// maxItemLooks bounds the list items one comparison looks at to resolve
// ignored positions. A few pointers into lists of git's length take a few
// hundred; many pointers (512 may match one object) into a list a tenant
// made long (20,000 items fit in an object) would take seconds of the shared
// process's CPU per comparison. Past the bound a position excuses nothing:
// the object is written, under fight backoff, instead.
const maxItemLooks = 1 << 17

// pathWithin resolves pointer tokens to a path of set, false when set holds
// nothing at or under it, or live and desired hold different items at one
// of its positions.
func pathWithin(set *fieldpath.Set, live, desired map[string]any, tokens []string, budget *int) (fieldpath.Path, bool) {
	path := make(fieldpath.Path, 0, len(tokens))
	var node, git any = live, desired
	level := set
	for i, token := range tokens {
		var pe fieldpath.PathElement
		switch n := node.(type) {
		case map[string]any:
			g, _ := git.(map[string]any)
			pe, node, git = fieldpath.FieldNameElement(token), n[token], g[token]
		case []any:
			g, _ := git.([]any)
			index, err := strconv.Atoi(token)
			if err != nil || index < 0 || index >= len(n) || index >= len(g) {
				return nil, false
			}
			found := false
			if pe, found = elementOf(level, n, index, budget); !found || !namesGitsItem(pe, g[index], index) {
				return nil, false
			}
			node, git = n[index], g[index]
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

// elementOf finds the element of set's top level that names the list
// item at index (by its key fields, its value or its index). A key leaves
// out a key field its item lacks, so k:{a:1} may be item {a:1} while the
// item at index is {a:1, b:2}: of the keys matching, the longest wins, and
// one that matches another item of the list too names none.
func elementOf(set *fieldpath.Set, list []any, index int, budget *int) (fieldpath.PathElement, bool) {
	if *budget -= len(list); *budget < 0 { // the set's level holds git's items only
		return fieldpath.PathElement{}, false
	}
	var found fieldpath.PathElement
	ok := false
	look := func(pe fieldpath.PathElement) {
		if namesItem(pe, list[index], index) && (!ok || keyLen(pe) > keyLen(found)) {
			found, ok = pe, true
		}
	}
	set.Children.Iterate(look)
	set.Members.Iterate(look)
	if !ok || found.Index != nil {
		return found, ok
	}
	for i, item := range list {
		if i != index && namesItem(found, item, i) {
			return fieldpath.PathElement{}, false
		}
	}
	return found, true
}

func keyLen(pe fieldpath.PathElement) int {
	if pe.Key == nil {
		return 0
	}
	return len(*pe.Key)
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

// namesGitsItem is namesItem for git's item, which may leave key fields to
// the server's defaults: those it lacks are not compared.
func namesGitsItem(pe fieldpath.PathElement, item any, index int) bool {
	if pe.Key == nil {
		return namesItem(pe, item, index)
	}
	m, ok := item.(map[string]any)
	if !ok {
		return false
	}
	for _, f := range *pe.Key {
		if v, ok := m[f.Name]; ok && !value.Equals(f.Value, value.NewValueInterface(v)) {
			return false
		}
	}
	return true
}
