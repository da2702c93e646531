// Package e2e drives alumiini the way users do: through a real kube-apiserver
// with aggregation and the real kubectl, on the local control plane of
// test/localcluster (the same one `make dev` runs).
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/localcluster"
)

var cluster *localcluster.Cluster

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := filepath.Abs("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "alumiini-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)

	tools, err := output(root, "hack/build-tools.sh")
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the control-plane tools: %v\n", err)
		return 1
	}
	alumiini := filepath.Join(dir, "alumiini")
	if _, err := output(root, "go", "build", "-o", alumiini, "./cmd/alumiini"); err != nil {
		fmt.Fprintf(os.Stderr, "building alumiini: %v\n", err)
		return 1
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	cluster, err = localcluster.Start(ctx, localcluster.Options{
		Dir:            filepath.Join(dir, "cluster"),
		ToolsDir:       strings.TrimSpace(tools),
		AlumiiniBinary: alumiini,
		RepoRoot:       root,
		FastStorage:    true,
		Progress:       os.Stderr,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the local control plane: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "local control plane ready in %s\n", time.Since(start).Round(100*time.Millisecond))
	code := m.Run()
	if code != 0 {
		// The component logs are removed with the directory: show alumiini's end.
		if data, err := os.ReadFile(cluster.LogPath("alumiini")); err == nil {
			lines := strings.Split(string(data), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			fmt.Fprintf(os.Stderr, "--- end of alumiini log ---\n%s\n", strings.Join(lines, "\n"))
		}
	}
	cluster.Stop()
	return code
}

func output(dir string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	return string(out), err
}
