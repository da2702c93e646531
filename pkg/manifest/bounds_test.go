package manifest

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// TestMaxObjectsStopsDecodingEarly: a file of tiny documents takes some fifty
// times its size decoded, so the bound is checked while decoding, not after.
func TestMaxObjectsStopsDecodingEarly(t *testing.T) {
	var doc strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&doc, "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c%d}\n", i)
	}
	repo := files("many.yaml", doc.String())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Render(context.Background(), "", FilesReader(repo), MaxObjects(100))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "--max-objects") || !strings.Contains(err.Error(), "many.yaml:") {
		t.Fatalf("got %v, want the limit named, at the document that broke it", err)
	}
	if grew := (after.TotalAlloc - before.TotalAlloc) >> 20; grew > 32 {
		t.Errorf("refusing 20,000 documents at the 101st allocated %d MiB", grew)
	}
	if objects, err := Render(context.Background(), "", FilesReader(repo), MaxObjects(20000)); err != nil || len(objects) != 20000 {
		t.Fatalf("within the bound: %d objects, %v", len(objects), err)
	}
}

func TestMaxObjectsBoundsAKustomization(t *testing.T) {
	repo := files(
		"kustomization.yaml", "resources: [a.yaml]\n",
		"a.yaml", fmt.Sprintf(cm, "one")+"---\n"+fmt.Sprintf(cm, "two")+"---\n"+fmt.Sprintf(cm, "three"))
	_, err := Render(context.Background(), "", FilesReader(repo), MaxObjects(2))
	if err == nil || !strings.Contains(err.Error(), "--max-objects") {
		t.Fatalf("got %v, want the limit named", err)
	}
}

// TestGeneratorsReadABoundedAmount: a 256 KiB file named by 200 generator
// entries once took half a GiB to build; every read counts.
func TestGeneratorsReadABoundedAmount(t *testing.T) {
	var k strings.Builder
	k.WriteString("configMapGenerator:\n- name: big\n  files:\n")
	for i := range 200 {
		fmt.Fprintf(&k, "  - k%d=data\n", i)
	}
	repo := files("kustomization.yaml", k.String(), "data", strings.Repeat("x", 256<<10))
	_, err := renderRepo("", repo)
	if err == nil || !strings.Contains(err.Error(), "generators would read more than 16 MiB") {
		t.Fatalf("got %v, want the generator bound", err)
	}
}
