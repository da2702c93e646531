package e2e

import (
	"bytes"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/localcluster"
)

// TestTheSoftMemoryLimitFollowsTheContainers: alumiini, started in a memory
// cgroup as a container runtime would start it, sets Go's soft memory limit
// to --memory-limit-ratio of what the cgroup's limit leaves after the
// kustomize builds' children, and serves it as go_gc_gomemlimit_bytes.
func TestTheSoftMemoryLimitFollowsTheContainers(t *testing.T) {
	const gib = 1 << 30
	for _, c := range []struct {
		name   string
		limit  int64
		env    []string
		args   []string
		want   float64
		logged string
	}{
		{name: "the shipped 3Gi, defaults: 0.9 of 3 GiB less 2 builds of 1 GiB", limit: 3 * gib,
			want: math.Floor(0.9 * gib)},
		{name: "flags", limit: gib, args: []string{"--memory-limit-ratio=0.5", "--max-concurrent-kustomize-builds=1",
			"--kustomize-memory-bytes=268435456"}, want: (gib - 256<<20) / 2},
		{name: "GOMEMLIMIT wins", limit: 3 * gib, env: []string{"GOMEMLIMIT=300MiB"}, want: 300 << 20,
			logged: "GOMEMLIMIT is set"},
		{name: "nothing left beside the builds", limit: gib, want: math.MaxInt64, logged: "leaves nothing for alumiini"},
		{name: "off", limit: 3 * gib, args: []string{"--memory-limit-ratio=0"}, want: math.MaxInt64},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, logs := standaloneMetric(t, memoryCgroup(t, c.limit), c.env, "go_gc_gomemlimit_bytes", c.args...)
			if got != c.want {
				t.Errorf("go_gc_gomemlimit_bytes = %.0f, want %.0f; logs:\n%s", got, c.want, logs)
			}
			if !strings.Contains(logs, c.logged) {
				t.Errorf("the logs do not say %q:\n%s", c.logged, logs)
			}
		})
	}
}

// TestABadMemoryLimitRatioIsRefused: the flag's error names it and the range.
func TestABadMemoryLimitRatioIsRefused(t *testing.T) {
	out, err := exec.Command(cluster.AlumiiniBinary(), "--memory-limit-ratio=1.5").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--memory-limit-ratio must be from 0 (no soft memory limit) to 1, got 1.5") {
		t.Errorf("alumiini --memory-limit-ratio=1.5: %v\n%s", err, out)
	}
}

// memoryCgroup makes a cgroup v1 memory cgroup limited to limit bytes,
// beside the test's own, removed when the test ends. This machine kind has
// the v1 memory controller; under cgroup v2 alone the test's own cgroup
// holds processes, so it could not hand the memory controller to a child.
func memoryCgroup(t *testing.T, limit int64) string {
	t.Helper()
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	parent := ""
	for _, line := range strings.Split(string(own), "\n") {
		if fields := strings.SplitN(line, ":", 3); len(fields) == 3 && fields[1] == "memory" {
			parent = filepath.Join("/sys/fs/cgroup/memory", fields[2])
		}
	}
	if parent == "" {
		t.Fatalf("no cgroup v1 memory controller in /proc/self/cgroup, which the test needs to limit alumiini's memory:\n%s", own)
	}
	dir, err := os.MkdirTemp(parent, "alumiini-e2e-")
	if err != nil {
		t.Fatalf("making a memory cgroup (make test runs as root): %v", err)
	}
	t.Cleanup(func() {
		// The killed process leaves the cgroup once it is reaped; rmdir
		// fails with EBUSY until then.
		for range 50 {
			if err := os.Remove(dir); err == nil || os.IsNotExist(err) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("removing the cgroup %s: still busy", dir)
	})
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// standaloneMetric starts alumiini without a cluster in cgroup, with env
// added to the tests' children's, until its metrics listener serves metric;
// it returns the value and alumiini's output.
func standaloneMetric(t *testing.T, cgroup string, env []string, metric string, args ...string) (float64, string) {
	t.Helper()
	var ports [2]int
	for i := range ports {
		var err error
		if ports[i], err = localcluster.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	metrics := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	dir := t.TempDir()
	// The shell joins the cgroup, then becomes alumiini: it starts inside,
	// as in a container, and reads the limit at start.
	cmd := exec.Command("sh", append([]string{"-c", `echo $$ > "$1/cgroup.procs" && shift && exec "$@"`, "sh", cgroup,
		cluster.AlumiiniBinary(), "--etcd-data-dir=" + dir + "/etcd", "--git-cache-dir=" + dir + "/git",
		"--cert-dir=" + dir + "/certs", "--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[0]),
		"--metrics-bind-address=" + metrics}, args...)...)
	cmd.Env = append(localcluster.ChildEnv(), env...)
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() string {
		_ = cmd.Process.Kill()
		<-exited
		return output.String()
	}
	deadline := time.After(time.Minute)
	for {
		select {
		case err := <-exited:
			exited <- err // for stop
			t.Fatalf("standalone alumiini exited (%v) before serving %s:\n%s", err, metric, stop())
		case <-deadline:
			t.Fatalf("standalone alumiini served no %s on %s in a minute:\n%s", metric, metrics, stop())
		case <-time.After(200 * time.Millisecond):
		}
		if series, err := seriesAt("http://" + metrics + "/metrics"); err == nil {
			if value, ok := series[metric]; ok {
				return value, stop()
			}
		}
	}
}
