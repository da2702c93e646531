package apply

import (
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestKeepIgnored(t *testing.T) {
	desired := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "web",
			"annotations": map[string]any{"a/b": "git"}},
		"spec": map[string]any{"replicas": int64(1), "template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "c", "image": "git:1"}}}}},
	}}
	live := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "web",
			"annotations": map[string]any{"a/b": "live"}},
		"spec": map[string]any{"replicas": int64(5), "template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "c", "image": "live:2"}}}}},
	}}
	rules := []IgnoreRule{
		{Group: "apps", Kind: "Deployment", Paths: []string{"/spec/replicas", "/metadata/annotations/a~1b",
			"/spec/template/spec/containers/0/image", "/spec/paused", "/spec/containers/9/x"}},
		{Group: "apps", Kind: "Deployment", Name: "other", Paths: []string{"/spec/template"}},
		{Kind: "Deployment", Paths: []string{"/spec/template"}}, // core group: does not match apps
	}
	keepIgnored(desired, live, findIgnored(live.Object, desired.Object, nil, ignoredTokens(desired, rules)))
	want := map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "web",
			"annotations": map[string]any{"a/b": "live"}},
		"spec": map[string]any{"replicas": int64(5), "template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "c", "image": "live:2"}}}}},
	}
	if !reflect.DeepEqual(desired.Object, want) {
		t.Errorf("got %v\nwant %v", desired.Object, want)
	}
	// The desired copy shares nothing with the live one.
	live.Object["spec"].(map[string]any)["replicas"] = int64(9)
	if desired.Object["spec"].(map[string]any)["replicas"] != int64(5) {
		t.Error("desired shares memory with live")
	}
}
