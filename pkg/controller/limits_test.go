package controller

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/falsesystems/alumiini/pkg/manifest"
)

func configMaps(n int, name func(int) string) []manifest.Object {
	objects := make([]manifest.Object, n)
	for i := range objects {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("v1")
		u.SetKind("ConfigMap")
		u.SetName(name(i))
		objects[i] = manifest.Object{Unstructured: u}
	}
	return objects
}

func TestObjectCountIsBounded(t *testing.T) {
	r := &Reconciler{MaxObjects: 100}
	short := func(i int) string { return fmt.Sprintf("cm-%d", i) }
	if err := r.checkBounds(configMaps(100, short)); err != nil {
		t.Fatalf("100 objects with a limit of 100: %v", err)
	}
	err := r.checkBounds(configMaps(101, short))
	if err == nil || !strings.Contains(err.Error(), "--max-objects") {
		t.Fatalf("101 objects: %v, want an error naming --max-objects", err)
	}
	// Few objects with very long names would still overflow the status.
	r.MaxObjects = 10000
	long := func(i int) string { return fmt.Sprintf("%0250d", i) }
	if err := r.checkBounds(configMaps(5000, long)); err == nil || !strings.Contains(err.Error(), "inventory") {
		t.Fatalf("5000 objects with 250-character names: %v, want the inventory bound", err)
	}
}

func TestMessagesAreBounded(t *testing.T) {
	huge := strings.Repeat("ä", maxMessageBytes) // two bytes a rune: cut mid-rune if careless
	got := truncate(huge)
	if len(got) > maxMessageBytes || !utf8.ValidString(got) || !strings.HasSuffix(got, "(truncated)") {
		t.Errorf("truncate: %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
	if got := truncate("  short  "); got != "short" {
		t.Errorf("truncate of a short message: %q", got)
	}
	event := brief(huge)
	if len(event) > 1024 || !utf8.ValidString(event) || !strings.Contains(event, "status") {
		t.Errorf("brief: %d bytes", len(event))
	}
}
