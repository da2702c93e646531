package server

import (
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2"
)

// TestTheSoftMemoryLimitLeavesRoomForTheBuilds: the ratio applies to what
// the container's limit leaves after the kustomize builds, and a limit that
// leaves under 256 MiB sets none.
func TestTheSoftMemoryLimitLeavesRoomForTheBuilds(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		container, children uint64
		ratio               float64
		want                int64
		set                 bool
	}{
		{3 * gib, 2 * gib, 0.9, 966367641, true}, // the shipped 3Gi and two builds of 1 GiB
		{3 * gib, 0, 0.9, 2899102924, true},      // no controller, no builds
		{gib, 256 << 20, 0.5, 402653184, true},
		{2*gib + 200<<20, 2 * gib, 1, 0, false}, // 200 MiB left: under the minimum
		{gib, 2 * gib, 0.9, 0, false},           // nothing left
		{2 * gib, 2 * gib, 0.9, 0, false},
		{math.MaxUint64, 0, 1, math.MaxInt64, true},
		{math.MaxUint64, math.MaxUint64, 1, 0, false},
	} {
		got, set := softMemoryLimit(c.container, c.children, c.ratio)
		if got != c.want || set != c.set {
			t.Errorf("softMemoryLimit(%d, %d, %v) = %d, %v; want %d, %v", c.container, c.children, c.ratio, got, set, c.want, c.set)
		}
	}
}

// TestABadMemoryLimitRatioIsRefused: the error names the flag and its range.
func TestABadMemoryLimitRatioIsRefused(t *testing.T) {
	for _, value := range []string{"1.5", "-0.1", "NaN"} {
		err := validateArgs(t, "--memory-limit-ratio="+value)
		if want := "--memory-limit-ratio must be from 0 (no soft memory limit) to 1, got " + value; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--memory-limit-ratio=%s: %v, want an error saying %q", value, err, want)
		}
	}
}

// TestTheSoftMemoryLimitMakesRoomWhileBuildsRun: each kustomize build
// running lowers the limit by what it may hold, and its end gives it back;
// while too little is left it holds the minimum.
func TestTheSoftMemoryLimitMakesRoomWhileBuildsRun(t *testing.T) {
	previous := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(previous) })
	const gib = 1 << 30
	l := &softMemoryLimiter{container: 3 * gib, perBuild: gib, ratio: 0.9, logger: klog.Background()}
	l.set()
	for i, step := range []struct {
		delta int
		want  int64
	}{
		{+1, 1932735283}, {+1, 966367641}, {+1, minSoftMemoryLimit}, {-1, 966367641}, {-1, 1932735283}, {-1, 2899102924},
		{-1, 2899102924}, // one more end than starts: the count stays at 0
		{+1, 1932735283},
	} {
		l.Building(step.delta)
		if got := debug.SetMemoryLimit(-1); got != step.want {
			t.Errorf("step %d (%+d): the soft memory limit is %d, want %d", i, step.delta, got, step.want)
		}
	}
}

// TestAKustomizeBuildLowersTheSoftMemoryLimitWhileItRuns: the controller's
// kustomize runner is wired to the limiter: while a build's child runs the
// limit leaves room for it, and once it has exited the room is given back.
func TestAKustomizeBuildLowersTheSoftMemoryLimitWhileItRuns(t *testing.T) {
	previous := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(previous) })
	o := NewOptions(io.Discard, io.Discard)
	o.softMemory = &softMemoryLimiter{container: 3 << 30, perBuild: o.Controller.Kustomize.MemoryBytes, ratio: 0.9,
		logger: klog.Background()}
	o.softMemory.set()
	// A child that takes a second and prints nothing stands for a build.
	child := filepath.Join(t.TempDir(), "child")
	if err := os.WriteFile(child, []byte("#!/bin/sh\nexec /bin/sleep 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	built := make(chan struct{})
	go func() {
		defer close(built)
		_, _ = o.kustomizeRunner(child).Build(context.Background(), nil, "")
	}()
	const idle, oneBuild = 2899102924, 1932735283 // 0.9 of 3 GiB, and of 2 GiB
	for seen := debug.SetMemoryLimit(-1); seen != oneBuild; seen = debug.SetMemoryLimit(-1) {
		select {
		case <-built:
			t.Fatalf("the build ended and the soft memory limit was never %d while it ran (last seen %d)", int64(oneBuild), seen)
		case <-time.After(10 * time.Millisecond):
		}
	}
	<-built
	if got := debug.SetMemoryLimit(-1); got != idle {
		t.Errorf("after the build the soft memory limit is %d, want %d", got, int64(idle))
	}
}
