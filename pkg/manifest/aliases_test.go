package manifest

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// laughs returns YAML whose anchors nest levels deep, nine aliases each:
// 9^levels nodes once expanded, from about 50 bytes a level. indent is put
// before every line, so it can sit under a key.
func laughs(levels int, indent string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%sl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n", indent)
	for i := 1; i < levels; i++ {
		p := fmt.Sprintf("*l%d", i-1)
		fmt.Fprintf(&b, "%sl%d: &l%d [%s]\n", indent, i, i, strings.Repeat(p+", ", 8)+p)
	}
	return b.String()
}

var bomb = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\nlaughs:\n" + laughs(10, "  ")

// TestAliasBombsAreRefused puts a billion laughs (9^10 nodes) in each place
// YAML is read from: it must fail with an error naming the file, quickly and
// in bounded memory.
func TestAliasBombsAreRefused(t *testing.T) {
	cases := []struct {
		name   string
		dir    string
		files  []string
		source string
	}{
		{name: "plain file", files: []string{"apps/lol.yaml", bomb}, dir: "apps", source: "apps/lol.yaml"},
		{name: "resource", files: []string{"kustomization.yaml", "resources:\n- lol.yaml\n", "lol.yaml", bomb}, source: "lol.yaml"},
		{name: "resource of a base", dir: "overlays/prod", files: []string{
			"overlays/prod/kustomization.yaml", "resources:\n- ../../base\n",
			"base/kustomization.yaml", "resources:\n- lol.yaml\n", "base/lol.yaml", bomb,
		}, source: "base/lol.yaml"},
		{name: "kustomization", files: []string{"kustomization.yaml", "resources:\n- cm.yaml\nx:\n" + laughs(10, "  ")}, source: "kustomization.yaml"},
		{name: "patch file", files: []string{"kustomization.yaml", "resources:\n- cm.yaml\npatches:\n- path: lol.yaml\n", "lol.yaml", bomb},
			source: "lol.yaml"},
		{name: "strategic merge patch file", files: []string{"kustomization.yaml", "resources:\n- cm.yaml\npatchesStrategicMerge:\n- lol.yaml\n", "lol.yaml", bomb},
			source: "lol.yaml"},
		{name: "inline patch", files: []string{"kustomization.yaml", "resources:\n- cm.yaml\npatches:\n- patch: |\n" + indent(bomb, "    ")},
			source: "kustomization.yaml (patches[0].patch)"},
		{name: "inline strategic merge patch", files: []string{"kustomization.yaml", "resources:\n- cm.yaml\npatchesStrategicMerge:\n- |\n" + indent(bomb, "  ")},
			source: "kustomization.yaml (patchesStrategicMerge[0])"},
		{name: "crd", files: []string{"kustomization.yaml", "resources:\n- cm.yaml\ncrds:\n- lol.yaml\n", "lol.yaml", bomb}, source: "lol.yaml"},
		{name: "configuration", files: []string{"kustomization.yaml", "resources:\n- cm.yaml\nconfigurations:\n- lol.yaml\n", "lol.yaml", bomb},
			source: "lol.yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := files(append(tc.files, "cm.yaml", strings.ReplaceAll(cm, "%s", "a"))...)
			var err error
			grew, took := measure(func() { _, err = renderRepo(tc.dir, repo) })
			var merr *Error
			if !errors.As(err, &merr) || merr.Source != tc.source || !strings.Contains(merr.Message, "billion laughs") {
				t.Fatalf("got %v, want %s refused as a billion laughs", err, tc.source)
			}
			if grew > 64<<20 {
				t.Errorf("allocated %d MiB refusing it, want under 64", grew>>20)
			}
			t.Logf("allocated %d KiB in %s", grew>>10, took)
			if took > 30*time.Second {
				t.Errorf("took %s", took)
			}
		})
	}
}

// measure returns the bytes allocated while f ran (TotalAlloc only grows, so
// garbage collection cannot hide a spike) and how long it took.
func measure(f func()) (uint64, time.Duration) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, took
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n"+prefix) + "\n"
}

// TestAliasesWithinTheBoundWork: ordinary use of anchors (shared blocks a
// few times over) renders, in a plain directory and through kustomize.
func TestAliasesWithinTheBoundWork(t *testing.T) {
	doc := `apiVersion: v1
kind: ConfigMap
metadata:
  name: one
  labels: &labels {team: web, tier: front}
  annotations: *labels
data: &data {a: "1", b: "2"}
---
apiVersion: v1
kind: Secret
metadata:
  name: one
  labels: &labels {team: web}
stringData: &data {a: "1"}
`
	if _, err := renderRepo("", files("x.yaml", doc)); err != nil {
		t.Fatalf("plain: %v", err)
	}
	objects, err := renderRepo("", files("kustomization.yaml", "resources:\n- x.yaml\n", "x.yaml", doc))
	if err != nil || len(objects) != 2 || objects[0].GetAnnotations()["tier"] != "front" {
		t.Fatalf("kustomize: %v %v", objects, err)
	}
}

// TestAliasBudgetIsSharedAcrossFiles: many files, each expanding a little
// (9^5 = 59049 nodes, under the slack alone), must not add up to what one
// file may not do. (Through kustomize: for plain files, sigs.k8s.io/yaml's
// own ratio check already refuses these.)
func TestAliasBudgetIsSharedAcrossFiles(t *testing.T) {
	kv := []string{"kustomization.yaml", ""}
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("f%02d.yaml", i)
		kv[1] += "- " + name + "\n"
		kv = append(kv, name, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c%d\nlaughs:\n%s", i, laughs(5, "  ")))
	}
	one := append([]string{"kustomization.yaml", "resources:\n- f00.yaml\n"}, kv[2:4]...)
	if _, err := renderRepo("", files(one...)); err != nil {
		t.Fatalf("one file: %v", err)
	}
	kv[1] = "resources:\n" + kv[1]
	_, err := renderRepo("", files(kv...))
	if err == nil || !strings.Contains(err.Error(), "billion laughs") {
		t.Fatalf("got %v, want the sum refused", err)
	}
}

// TestAliasInsideItsOwnAnchor: an anchor that contains its own alias is a
// cycle, which a counter that follows aliases would never finish.
func TestAliasInsideItsOwnAnchor(t *testing.T) {
	_, err := renderRepo("", files("x.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata: &d {x: *d}\n"))
	var merr *Error
	if !errors.As(err, &merr) || merr.Source != "x.yaml" {
		t.Fatalf("got %v, want x.yaml refused", err)
	}
}

// TestAQuotedSeparatorDoesNotHideAliases: a quoted scalar holding a line
// that starts with "---" once split the budget's view of a plain file into
// chunks it could not parse and skipped, while the reader parsed the whole
// document and expanded its aliases (a 565 KiB directory grew the heap by
// 1.3 GiB). The budget now counts each document as the reader parses it.
func TestAQuotedSeparatorDoesNotHideAliases(t *testing.T) {
	items := strings.TrimSuffix(strings.Repeat("a,", 770), ",")
	refs := strings.TrimSuffix(strings.Repeat("*a,", 100), ",")
	var kv []string
	for i := 0; i < 300; i++ {
		kv = append(kv, fmt.Sprintf("f%03d.yaml", i), fmt.Sprintf(
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c%d\nhidden: \"\n---x\n\"\na: &a [%s]\nb: [%s]\n", i, items, refs))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := renderRepo("", files(kv...))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "billion laughs") {
		t.Fatalf("got %v, want the expansion refused", err)
	}
	if grew := int64(after.TotalAlloc-before.TotalAlloc) >> 20; grew > 256 {
		t.Errorf("refusing it allocated %d MiB", grew)
	}
}
