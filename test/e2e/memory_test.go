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

	"github.com/falsesystems/alumiini/test/freeport"
	"github.com/falsesystems/alumiini/test/localcluster"
)

// TestTheSoftMemoryLimitFollowsTheContainers: alumiini, started in a memory
// cgroup as a container runtime would start it, sets Go's soft memory limit
// to --memory-limit-ratio of the cgroup's limit (no kustomize build runs
// yet), and serves it as go_gc_gomemlimit_bytes. How builds lower it, and
// the arithmetic's edges, are unit-tested in pkg/cmd/server; this reads the
// cgroup, the flags and the environment as shipped.
func TestTheSoftMemoryLimitFollowsTheContainers(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name   string
		limit  int64
		env    []string
		args   []string
		want   float64
		logged string
	}{
		{name: "defaults: 0.9 of 1 GiB", limit: 1024 * mib, want: math.Floor(0.9 * 1024 * mib),
			logged: "Soft memory limit set from the container's"},
		{name: "ratio", limit: 1024 * mib, args: []string{"--memory-limit-ratio=0.5"}, want: 512 * mib},
		{name: "GOMEMLIMIT wins", limit: 1024 * mib, env: []string{"GOMEMLIMIT=300MiB"}, want: 300 * mib,
			logged: "taken from GOMEMLIMIT"},
		{name: "too small: 0.9 of 280 MiB is under 256 MiB", limit: 280 * mib, want: math.MaxInt64,
			logged: "too small for a soft memory limit"},
		{name: "off", limit: 1024 * mib, args: []string{"--memory-limit-ratio=0"}, want: math.MaxInt64},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, logs := extraAlumiiniMetric(t, memoryCgroup(t, c.limit), c.env, "go_gc_gomemlimit_bytes", c.args...)
			if got != c.want {
				t.Errorf("go_gc_gomemlimit_bytes = %.0f, want %.0f; logs:\n%s", got, c.want, logs)
			}
			if !strings.Contains(logs, c.logged) {
				t.Errorf("the logs do not say %q:\n%s", c.logged, logs)
			}
		})
	}
}

// memoryCgroup makes a memory cgroup limited to limit bytes inside the
// test's own, removed when the test ends. It needs the cgroup v1 memory
// controller mounted at /sys/fs/cgroup/memory, as on the machines make test
// runs on, and no cgroup namespace. Under cgroup v2 alone it would need a
// cgroup that holds no process to hand the memory controller down from
// (v2's no-internal-process rule), which the test's own does.
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

// extraAlumiiniMetric starts an alumiini of its own (beside the cluster's,
// with its own data and ports; without --kubeconfig in args it runs
// standalone) in cgroup, with env added to the tests' children's, until its
// metrics listener serves metric; it returns the value and its output.
func extraAlumiiniMetric(t *testing.T, cgroup string, env []string, metric string, args ...string) (float64, string) {
	t.Helper()
	var ports [2]int
	for i := range ports {
		var err error
		if ports[i], err = freeport.Loopback(); err != nil {
			t.Fatal(err)
		}
	}
	metrics := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	// The shell joins the cgroup, then becomes alumiini: it starts inside,
	// as in a container, and reads the limit at start.
	shell := []string{"-c", `echo $$ > "$1/cgroup.procs" && shift && exec "$@"`, "sh", cgroup, cluster.AlumiiniBinary()}
	args = append(ownData(t.TempDir()), append([]string{"--secure-port=" + strconv.Itoa(ports[0]), "--metrics-bind-address=" + metrics}, args...)...)
	cmd := exec.Command("sh", append(shell, args...)...)
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
			t.Fatalf("alumiini exited (%v) before serving %s:\n%s", err, metric, stop())
		case <-deadline:
			t.Fatalf("alumiini served no %s on %s in a minute:\n%s", metric, metrics, stop())
		case <-time.After(200 * time.Millisecond):
		}
		if series, err := seriesAt("http://" + metrics + "/metrics"); err == nil {
			if value, ok := series[metric]; ok {
				return value, stop()
			}
		}
	}
}

// ownData are the flags that give an extra alumiini its own data under dir
// and loopback addresses.
func ownData(dir string) []string {
	return []string{"--etcd-data-dir=" + dir + "/etcd", "--git-cache-dir=" + dir + "/git", "--cert-dir=" + dir + "/certs",
		"--bind-address=127.0.0.1"}
}
