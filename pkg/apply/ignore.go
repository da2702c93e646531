package apply

import (
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
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

// keepIgnored sets every ignored field of desired (ignoredTokens) to its
// live value, or removes it from desired when the live object lacks it, so
// applying changes none of them and another writer (an autoscaler) keeps
// them.
func keepIgnored(desired, live *unstructured.Unstructured, ignored [][]string) {
	for _, tokens := range ignored {
		if value, ok := lookup(live.Object, tokens); ok {
			set(desired.Object, tokens, value)
		} else {
			remove(desired.Object, tokens)
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
