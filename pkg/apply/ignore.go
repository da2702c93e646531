package apply

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/value"
)

// IgnoreRule names fields (JSON pointers) of some objects whose live value
// applying keeps.
type IgnoreRule struct {
	Group, Kind string
	// Name is one object's name; empty matches every object of the kind.
	Name  string
	Paths []string
}

func (r IgnoreRule) matches(u *unstructured.Unstructured) bool {
	gvk := u.GroupVersionKind()
	return r.Group == gvk.Group && r.Kind == gvk.Kind && (r.Name == "" || r.Name == u.GetName())
}

// ignoredTokens are the JSON pointers, split into tokens, of every ignored
// path of u, leaving out duplicates and those within another ignored path
// (a tenant's long list under an ignored path would otherwise be scanned
// once per pointer into it).
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
	slices.SortStableFunc(pointers, func(a, b []string) int { return cmp.Compare(len(a), len(b)) })
	kept := pointers[:0]
	for _, p := range pointers {
		if !slices.ContainsFunc(kept, func(k []string) bool { return slices.Equal(k, p[:len(k)]) }) {
			kept = append(kept, p)
		}
	}
	return kept
}

// ignoredField is an ignored path found in one object: where it is in the
// live object (nil when the live object lacks the item) and in git's, and
// its path in field sets (nil when alumiini's managedFields do not name
// every item on the way).
type ignoredField struct {
	live, git []string
	path      fieldpath.Path
}

// findIgnored finds each ignored path in the live object and git's. A list
// position in a pointer names the item git lists there. Where alumiini's
// own managedFields (own, the live object's) name that list's items by key
// or value, its live counterpart is the item of the same key, wherever the
// live order puts it: whoever may write the object chooses the live order,
// and taken by position, a pointer to git's second port would copy, and
// excuse, whatever port they put second. In a list whose items they do not
// name (an atomic list such as args, an object being adopted) a position is
// the same position in both.
func findIgnored(live, git map[string]any, own *fieldpath.Set, pointers [][]string) []ignoredField {
	budget := maxItemLooks
	var found []ignoredField
	for _, tokens := range pointers {
		if f, ok := findOne(live, git, own, tokens, &budget); ok {
			found = append(found, f)
		}
		if budget < 0 {
			break // the rest keep git's values
		}
	}
	return found
}

// maxItemLooks bounds the list items and field set elements one apply looks
// at to find ignored positions. A few pointers into lists of git's length
// take a few hundred; many pointers (512 may match one object) into a list
// a tenant made long (20,000 items fit in an object) took 0.87 s of the
// shared process's CPU per comparison. Past the bound a position finds
// nothing: git's value is applied and the object written, under fight
// backoff, instead.
const maxItemLooks = 1 << 17

// findOne walks one pointer through the live object, git's and alumiini's
// own field set together.
func findOne(live, git map[string]any, own *fieldpath.Set, tokens []string, budget *int) (ignoredField, bool) {
	f := ignoredField{live: make([]string, 0, len(tokens)), git: make([]string, 0, len(tokens)),
		path: make(fieldpath.Path, 0, len(tokens))}
	var liveNode, gitNode any = live, git
	liveLacks, pathless := false, false
	for _, token := range tokens {
		liveToken := token
		switch gitParent := gitNode.(type) {
		case map[string]any:
			liveParent, _ := liveNode.(map[string]any)
			liveNode, gitNode = liveParent[token], gitParent[token]
			f.path = append(f.path, fieldpath.FieldNameElement(token))
		case []any:
			i, err := strconv.Atoi(token)
			if err != nil || i < 0 || i >= len(gitParent) {
				return ignoredField{}, false
			}
			liveParent, _ := liveNode.([]any)
			pe, keyFields, keyed, ambiguous := keyOf(own, gitParent, i, budget)
			if ambiguous || *budget < 0 {
				return ignoredField{}, false
			}
			j := i
			if keyed {
				var ok bool
				if j, ok = itemNamed(pe, liveParent, keyFields, budget); !ok {
					return ignoredField{}, false
				}
				f.path = append(f.path, pe)
			} else {
				pathless = true // the same position in both
			}
			if liveLacks = liveLacks || j < 0 || j >= len(liveParent); !liveLacks {
				liveToken, liveNode = strconv.Itoa(j), liveParent[j]
			}
			gitNode = gitParent[i]
		default:
			return ignoredField{}, false
		}
		f.live, f.git = append(f.live, liveToken), append(f.git, token)
		switch {
		case pathless:
			own = nil // below a position, keys of the outer list name nothing
		case own != nil:
			own, _ = own.Children.Get(f.path[len(f.path)-1]) // nil: nothing of alumiini's below
		}
	}
	if liveLacks {
		f.live = nil
	}
	if liveLacks || pathless {
		f.path = nil
	}
	return f, true
}

// keyOf is the element of set's top level naming git's item list[i], by
// its key fields or its value; none for a list with neither. Git may leave
// key fields to the server's defaults, so a key naming fields the item
// lacks matches it too, but another of git's items may be that key's
// (ports 53/SCTP and 53 with TCP left to the default): a key matching
// every field it names wins, the longest; else one no other item of git's
// matches in full. A tie between the longest is ambiguous. It also returns
// the names the level's keys use (itemNamed). Every element looked at is
// charged to budget by its weight: whoever may write the object may write
// managedFields, keys of thousands of fields or long values included.
func keyOf(set *fieldpath.Set, list []any, i int, budget *int) (found fieldpath.PathElement, keyFields map[string]bool, ok, ambiguous bool) {
	if set == nil {
		return fieldpath.PathElement{}, nil, false, false
	}
	keyFields = map[string]bool{}
	var full, partial []fieldpath.PathElement
	look := func(pe fieldpath.PathElement) {
		if *budget < 0 {
			return // past the bound, even weighing the rest costs
		}
		if *budget -= 1 + weight(pe); *budget < 0 {
			return
		}
		if pe.Key != nil {
			for _, f := range *pe.Key {
				keyFields[f.Name] = true
			}
		}
		switch {
		case namesItem(pe, list[i], false):
			full = append(full, pe)
		case namesItem(pe, list[i], true):
			partial = append(partial, pe)
		}
	}
	set.Children.Iterate(look)
	set.Members.Iterate(look)
	if len(full) == 0 {
		for _, pe := range partial {
			*budget -= len(list) * (1 + weight(pe))
		}
		if *budget < 0 {
			return fieldpath.PathElement{}, nil, false, false
		}
		full = slices.DeleteFunc(partial, func(pe fieldpath.PathElement) bool {
			return slices.ContainsFunc(list, func(other any) bool { return namesItem(pe, other, false) })
		})
	}
	if len(full) == 0 || *budget < 0 {
		return fieldpath.PathElement{}, nil, false, false
	}
	// The longest, in one pass: sorting compared keys' values n log n times,
	// past what the budget charged (a second review: 103 ms on keys of maps).
	// An item's key is both a member (the item itself) and a parent (its
	// fields): the same element twice is no tie.
	longest, tie := full[0], false
	for _, pe := range full[1:] {
		switch {
		case keyLen(pe) > keyLen(longest):
			longest, tie = pe, false
		case keyLen(pe) == keyLen(longest) && !pe.Equals(longest):
			tie = true
		}
	}
	if tie {
		return fieldpath.PathElement{}, nil, false, true
	}
	return longest, keyFields, true, false
}

// itemNamed is the position of the one live item pe names, -1 for none;
// false when pe names several, or past the budget. A key leaves out a key
// field its item lacks, so k:{a:1} names {a:1} but not {a:1, b:2}: an item
// holding a key field (one that keys of its list name, keyFields) that pe
// lacks is another item. Each item looked at is charged to budget: pe's
// weight and the item's fields.
func itemNamed(pe fieldpath.PathElement, list []any, keyFields map[string]bool, budget *int) (int, bool) {
	inKey := map[string]bool{}
	if pe.Key != nil {
		for _, f := range *pe.Key {
			inKey[f.Name] = true
		}
	}
	at, w := -1, weight(pe)
	for i, item := range list {
		m, _ := item.(map[string]any)
		if *budget -= 1 + w + len(m); *budget < 0 {
			return 0, false
		}
		if !namesItem(pe, item, false) || holdsAnotherKeyField(m, inKey, keyFields) {
			continue
		}
		if at >= 0 {
			return 0, false
		}
		at = i
	}
	return at, true
}

// holdsAnotherKeyField says whether an item holds a key field (keyFields)
// that its key (inKey) does not name.
func holdsAnotherKeyField(m map[string]any, inKey, keyFields map[string]bool) bool {
	for name := range m {
		if keyFields[name] && !inKey[name] {
			return true
		}
	}
	return false
}

// weight is what comparing pe's key or value with an item costs: one per
// scalar in it, and one more per 64 bytes of a string. Real keys are a few
// short scalars, but whoever may write the object may write managedFields
// whose keys hold long lists or strings, and every comparison walks them (an
// attacker review's key held a list of 100,000 strings: 24 s per comparison
// when it counted as one field).
func weight(pe fieldpath.PathElement) int {
	switch {
	case pe.Key != nil:
		n := 0
		for _, f := range *pe.Key {
			n += len(f.Name)/64 + valueWeight(f.Value)
		}
		return n
	case pe.Value != nil:
		return valueWeight(*pe.Value)
	}
	return 0
}

func valueWeight(v value.Value) int {
	n := 1
	switch {
	case v.IsString():
		n += len(v.AsString()) / 64
	case v.IsList():
		list := v.AsList()
		for i := range list.Length() {
			n += valueWeight(list.At(i))
		}
	case v.IsMap():
		v.AsMap().Iterate(func(key string, field value.Value) bool {
			n += len(key)/64 + valueWeight(field)
			return true
		})
	}
	return n
}

func keyLen(pe fieldpath.PathElement) int {
	if pe.Key == nil {
		return 0
	}
	return len(*pe.Key)
}

// namesItem says whether a list item is the one pe names by its key fields
// or its value; lenient, key fields the item lacks are not compared.
func namesItem(pe fieldpath.PathElement, item any, lenient bool) bool {
	switch {
	case pe.Value != nil:
		return value.Equals(*pe.Value, value.NewValueInterface(item))
	case pe.Key != nil:
		m, ok := item.(map[string]any)
		if !ok {
			return false
		}
		for _, f := range *pe.Key {
			v, ok := m[f.Name]
			if !ok && lenient {
				continue
			}
			if !ok || !value.Equals(f.Value, value.NewValueInterface(v)) {
				return false
			}
		}
		return true
	}
	return false
}

// keepIgnored sets every ignored field of git's object (desired) to its
// live value, or removes it from desired when the live object lacks it, so
// applying changes none of them and another writer (an autoscaler) keeps
// them.
func keepIgnored(desired, live *unstructured.Unstructured, ignored []ignoredField) {
	for _, f := range ignored {
		if v, ok := lookup(live.Object, f.live); ok && f.live != nil { // nil: the live object lacks the item
			set(desired.Object, f.git, v)
		} else {
			remove(desired.Object, f.git)
		}
	}
}

// pointerTokens splits an RFC 6901 JSON pointer into its unescaped tokens.
func pointerTokens(p string) []string {
	if !strings.HasPrefix(p, "/") {
		return nil
	}
	tokens := strings.Split(p[1:], "/")
	for i, t := range tokens {
		tokens[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return tokens
}

func lookup(node any, tokens []string) (any, bool) {
	for _, t := range tokens {
		switch n := node.(type) {
		case map[string]any:
			next, ok := n[t]
			if !ok {
				return nil, false
			}
			node = next
		case []any:
			i, err := strconv.Atoi(t)
			if err != nil || i < 0 || i >= len(n) {
				return nil, false
			}
			node = n[i]
		default:
			return nil, false
		}
	}
	return node, true
}

// set puts value at tokens in the desired object, creating maps on the way;
// a list index must already exist (a list cannot be grown to reach it).
func set(node any, tokens []string, value any) {
	for i, t := range tokens {
		last := i == len(tokens)-1
		switch n := node.(type) {
		case map[string]any:
			if last {
				n[t] = runtime.DeepCopyJSONValue(value)
				return
			}
			next, ok := n[t]
			if !ok {
				next = map[string]any{}
				n[t] = next
			}
			node = next
		case []any:
			idx, err := strconv.Atoi(t)
			if err != nil || idx < 0 || idx >= len(n) {
				return
			}
			if last {
				n[idx] = runtime.DeepCopyJSONValue(value)
				return
			}
			node = n[idx]
		default:
			return
		}
	}
}

func remove(node any, tokens []string) {
	parent, ok := lookup(node, tokens[:len(tokens)-1])
	if !ok {
		return
	}
	if m, ok := parent.(map[string]any); ok {
		delete(m, tokens[len(tokens)-1])
	}
}
