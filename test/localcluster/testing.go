package localcluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// RepoRoot is the alumiini checkout this package is compiled from.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// StartForTest builds what is missing (the control-plane tools are cached in
// _output; alumiini is built into dir) and starts a cluster in dir on free
// ports. Tests call it from TestMain.
func StartForTest(dir string, controlPlaneOnly bool) (*Cluster, error) {
	root := RepoRoot()
	cmd := exec.Command(filepath.Join(root, "hack/build-tools.sh"))
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	tools, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("building the control-plane tools: %w", err)
	}
	opts := Options{
		Dir:              filepath.Join(dir, "cluster"),
		ToolsDir:         strings.TrimSpace(string(tools)),
		RepoRoot:         root,
		FastStorage:      true,
		Progress:         os.Stderr,
		ControlPlaneOnly: controlPlaneOnly,
	}
	if !controlPlaneOnly {
		opts.AlumiiniBinary = filepath.Join(dir, "alumiini")
		build := exec.Command("go", "build", "-o", opts.AlumiiniBinary, "./cmd/alumiini")
		build.Dir = root
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("building alumiini: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return Start(ctx, opts)
}
