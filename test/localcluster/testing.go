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

// BuildAlumiini builds alumiini from this checkout into out, static as the
// image is (hack/image), so the tests and the bench run the binary that
// ships. With cgo it would differ: kustomize imports the standard plugin
// package, and a cgo binary linking it exports every symbol for plugins to
// bind to (176 MB unstripped; make bench's empty process had 105 MiB of it
// resident, against 73-84 MiB of the static binary; docs/scale.md).
func BuildAlumiini(out string) error {
	build := exec.Command("go", "build", "-o", out, "./cmd/alumiini")
	build.Dir = RepoRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building alumiini: %w", err)
	}
	return nil
}

// StartForTest builds what is missing (the control-plane tools are cached in
// _output; alumiini is built into dir) and starts a cluster in dir on free
// ports. Tests call it from TestMain.
func StartForTest(dir string, controlPlaneOnly bool, alumiiniArgs ...string) (*Cluster, error) {
	return StartForTestWith(dir, Options{ControlPlaneOnly: controlPlaneOnly, AlumiiniArgs: alumiiniArgs})
}

// StartForTestWith is StartForTest taking ControlPlaneOnly, AlumiiniArgs,
// AlumiiniEnv, ControllerManagerArgs and KubeAPIServerArgs from given; it
// fills in the rest.
func StartForTestWith(dir string, given Options) (*Cluster, error) {
	root := RepoRoot()
	cmd := exec.Command(filepath.Join(root, "hack/build-tools.sh"))
	cmd.Dir = root
	cmd.Stderr = os.Stderr
	tools, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("building the control-plane tools: %w", err)
	}
	opts := Options{
		Dir:                   filepath.Join(dir, "cluster"),
		ToolsDir:              strings.TrimSpace(string(tools)),
		RepoRoot:              root,
		FastStorage:           true,
		Progress:              os.Stderr,
		ControlPlaneOnly:      given.ControlPlaneOnly,
		AlumiiniArgs:          given.AlumiiniArgs,
		AlumiiniEnv:           given.AlumiiniEnv,
		ControllerManagerArgs: given.ControllerManagerArgs,
		KubeAPIServerArgs:     given.KubeAPIServerArgs,
	}
	if !opts.ControlPlaneOnly {
		opts.AlumiiniBinary = filepath.Join(dir, "alumiini")
		if err := BuildAlumiini(opts.AlumiiniBinary); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// A port found free may be taken by another process's outgoing
	// connection before a component binds it: start afresh on new ports.
	for attempt := 1; ; attempt++ {
		c, err := Start(ctx, opts)
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return c, err
		}
		fmt.Fprintf(os.Stderr, "==> a port was taken meanwhile; starting again on others: %v\n", firstLine(err))
		if err := os.RemoveAll(opts.Dir); err != nil {
			return nil, err
		}
	}
}

func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	return line
}
