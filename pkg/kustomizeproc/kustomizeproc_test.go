package kustomizeproc

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/pkg/git"
	"github.com/falsesystems/alumiini/pkg/manifest"
)

// The test binary is the child too, as alumiini is in production.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == Subcommand {
		Main(os.Args[2:])
	}
	os.Exit(m.Run())
}

func runner(t *testing.T, limits Limits) *Runner {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if limits.OutputBytes == 0 {
		limits.OutputBytes = DefaultLimits.OutputBytes
	}
	return New(self, limits)
}

func render(ctx context.Context, r *Runner, dir string, kv ...string) ([]manifest.Object, error) {
	var files []git.File
	for i := 0; i < len(kv); i += 2 {
		files = append(files, git.File{Path: kv[i], Data: []byte(kv[i+1])})
	}
	return manifest.Render(ctx, dir, manifest.FilesReader(files), manifest.Kustomize(r.Build))
}

func TestABuildInAChildMatchesOneInProcess(t *testing.T) {
	repo := []string{
		"base/kustomization.yaml", "resources: [deploy.yaml]\n",
		"base/deploy.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n",
		"prod/kustomization.yaml", "resources: [../base]\nnamePrefix: prod-\n",
	}
	objects, err := render(context.Background(), runner(t, DefaultLimits), "prod", repo...)
	if err != nil {
		t.Fatal(err)
	}
	if len(objects) != 1 || objects[0].GetName() != "prod-web" {
		t.Fatalf("got %v", objects)
	}
	// Numbers come back as unstructured wants them, so DeepCopy works.
	if replicas, _, _ := unstructuredInt(objects[0].DeepCopy().Object); replicas != 2 {
		t.Errorf("replicas %v", replicas)
	}
}

// TestABuildThatBurnsCPUIsStopped: many patches on many resources once took
// ~50 s of CPU in the process every tenant shares, and could not be stopped.
func TestABuildThatBurnsCPUIsStopped(t *testing.T) {
	burner := cpuBurner()
	start := time.Now()
	_, err := render(context.Background(), runner(t, Limits{CPUSeconds: 1, MemoryBytes: 1 << 30, Concurrent: 1}), "",
		burner...)
	if err == nil || !strings.Contains(err.Error(), "CPU time") {
		t.Fatalf("got %v, want the CPU limit named", err)
	}
	t.Logf("stopped after %s: %v", time.Since(start).Round(time.Millisecond), err)
}

func TestABuildThatNeedsTooMuchMemoryIsStopped(t *testing.T) {
	var k strings.Builder
	k.WriteString("configMapGenerator:\n- name: big\n  files:\n")
	for i := range 60 {
		fmt.Fprintf(&k, "  - k%d=data\n", i)
	}
	_, err := render(context.Background(), runner(t, Limits{CPUSeconds: 30, MemoryBytes: 96 << 20, Concurrent: 1}), "",
		"kustomization.yaml", k.String(), "data", strings.Repeat("x", 256<<10))
	t.Logf("%v", err)
	if err == nil || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("got %v, want the memory limit named", err)
	}
}

func TestTheSyncsContextKillsTheBuild(t *testing.T) {
	burner := cpuBurner()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := render(ctx, runner(t, DefaultLimits), "", burner...)
	if err == nil || ctx.Err() == nil {
		t.Fatalf("got %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the build outlived its context by %s", took)
	}
}

func unstructuredInt(obj map[string]interface{}) (int64, bool, error) {
	spec, _ := obj["spec"].(map[string]interface{})
	v, ok := spec["replicas"].(int64)
	return v, ok, nil
}

// cpuBurner is a repository whose kustomization applies 400 patches to 400
// ConfigMaps: small input, about 50 s of CPU.
func cpuBurner() []string {
	var k, cms strings.Builder
	k.WriteString("resources: [cms.yaml]\npatches:\n")
	for i := range 400 {
		fmt.Fprintf(&k, "- target: {kind: ConfigMap}\n  patch: |-\n    - op: add\n      path: /metadata/labels/l%d\n      value: v\n", i)
		fmt.Fprintf(&cms, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c%d\n  labels: {a: b}\n", i)
	}
	return []string{"kustomization.yaml", k.String(), "cms.yaml", cms.String()}
}

// TestMostHeldIsEveryChildAtItsLimit: the soft memory limit leaves room for
// every build at once, and a limit too large to multiply saturates.
func TestMostHeldIsEveryChildAtItsLimit(t *testing.T) {
	for _, c := range []struct {
		limits Limits
		want   uint64
	}{
		{DefaultLimits, 2 << 30},
		{Limits{MemoryBytes: 96 << 20, Concurrent: 3}, 288 << 20},
		{Limits{MemoryBytes: 96 << 20}, 192 << 20}, // New's default of two
		{Limits{MemoryBytes: math.MaxUint64 / 2, Concurrent: 3}, math.MaxUint64},
	} {
		if got := c.limits.MostHeld(); got != c.want {
			t.Errorf("%+v: MostHeld() = %d, want %d", c.limits, got, c.want)
		}
	}
}

// TestWhileBuildingHearsEachBuildStartAndEnd: the hook hears a build
// start and end, a failed one's too.
func TestWhileBuildingHearsEachBuildStartAndEnd(t *testing.T) {
	var heard []int
	r := runner(t, DefaultLimits).WhileBuilding(func(delta int) { heard = append(heard, delta) })
	repo := []string{"kustomization.yaml", "resources: [cm.yaml]\n",
		"cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"}
	if _, err := render(context.Background(), r, "", repo...); err != nil {
		t.Fatal(err)
	}
	// The child fails: the patch's target is not among the resources.
	if _, err := render(context.Background(), r, "", "kustomization.yaml", "patches: [{path: p.yaml}]\n",
		"p.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: none\ndata: {a: b}\n"); err == nil {
		t.Fatal("a patch of nothing built")
	}
	if fmt.Sprint(heard) != "[1 -1 1 -1]" {
		t.Errorf("heard %v, want [1 -1 1 -1]", heard)
	}
}
