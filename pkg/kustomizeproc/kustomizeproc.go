// Package kustomizeproc runs kustomize builds in child processes of
// alumiini, bounded in CPU time and memory and killed with the sync's
// context. A build cannot be interrupted in process, and its cost is bounded
// by its input only loosely (many patches on many resources, tiny objects),
// so in the process the API server and etcd share it could starve or crash
// everyone.
package kustomizeproc

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/falsesystems/alumiini/pkg/git"
	"github.com/falsesystems/alumiini/pkg/manifest"
)

// Subcommand is the first argument that makes alumiini a build child.
const Subcommand = "kustomize-build"

// Limits of one build child.
type Limits struct {
	// CPUSeconds of CPU time a build may use (RLIMIT_CPU).
	CPUSeconds uint64
	// MemoryBytes of heap and other writable memory (RLIMIT_DATA).
	MemoryBytes uint64
	// OutputBytes a build may write (its JSON objects).
	OutputBytes int64
	// Concurrent builds at once.
	Concurrent int
}

// DefaultLimits suit the input bounds of pkg/git and pkg/manifest.
var DefaultLimits = Limits{CPUSeconds: 30, MemoryBytes: 1 << 30, OutputBytes: 64 << 20, Concurrent: 2}

// concurrent is how many builds run at once: Concurrent, or the default's
// when it is not set.
func (l Limits) concurrent() int {
	if l.Concurrent <= 0 {
		return DefaultLimits.Concurrent
	}
	return l.Concurrent
}

// MostHeld is the writable memory the build children may hold together:
// concurrent() of them at MemoryBytes each, at most the largest uint64.
func (l Limits) MostHeld() uint64 {
	concurrent := uint64(l.concurrent())
	if l.MemoryBytes > math.MaxUint64/concurrent {
		return math.MaxUint64
	}
	return l.MemoryBytes * concurrent
}

// request is what the parent sends the child on standard input.
type request struct {
	Dir   string
	Files []git.File
}

// Runner builds kustomizations in child processes of binary.
type Runner struct {
	binary string
	limits Limits
	slots  chan struct{}
	// building, when set, hears +1 before a build's child starts and -1
	// once it has exited.
	building func(delta int)
}

// New returns a Runner that re-executes binary (normally os.Executable()).
func New(binary string, limits Limits) *Runner {
	limits.Concurrent = limits.concurrent()
	return &Runner{binary: binary, limits: limits, slots: make(chan struct{}, limits.Concurrent)}
}

// WhileBuilding has f told +1 before each build's child starts and -1 once
// it has exited, so that alumiini can leave room for the children's memory
// (each up to Limits.MemoryBytes) only while they run. Set it before the
// first Build.
func (r *Runner) WhileBuilding(f func(delta int)) *Runner {
	r.building = f
	return r
}

// Build is a manifest.KustomizeFunc: it builds in a child and returns the
// child's JSON, or why the child failed.
func (r *Runner) Build(ctx context.Context, files []git.File, dir string) ([]byte, error) {
	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if r.building != nil {
		r.building(+1)
		defer r.building(-1)
	}
	var input bytes.Buffer
	if err := gob.NewEncoder(&input).Encode(request{Dir: dir, Files: files}); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, r.binary, Subcommand,
		fmt.Sprint(r.limits.CPUSeconds), fmt.Sprint(r.limits.MemoryBytes))
	cmd.Stdin = &input
	cmd.Env = []string{"GOMAXPROCS=1"} // nothing of ours leaks in; one core per build
	var stderr limitedBuffer
	stderr.max = 16 << 10
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting a kustomize build process: %w", err)
	}
	output, readErr := io.ReadAll(io.LimitReader(stdout, r.limits.OutputBytes+1))
	if int64(len(output)) > r.limits.OutputBytes {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("the build's output is over the limit of %d MiB", r.limits.OutputBytes>>20)
	}
	waitErr := cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case waitErr != nil:
		return nil, r.explain(waitErr, stderr.String())
	case readErr != nil:
		return nil, readErr
	}
	return output, nil
}

// explain turns a child's end into a message a user can act on.
func (r *Runner) explain(err error, stderr string) error {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		if status, ok := exit.Sys().(syscall.WaitStatus); ok && status.Signaled() {
			switch status.Signal() {
			case syscall.SIGXCPU, syscall.SIGKILL:
				return fmt.Errorf("the build used more than its %d s of CPU time; simplify the kustomization "+
					"(fewer patches on fewer resources) or split it", r.limits.CPUSeconds)
			}
		}
	}
	if msg := strings.TrimSpace(stderr); msg != "" {
		if strings.Contains(msg, "out of memory") || strings.Contains(msg, "cannot allocate memory") {
			return fmt.Errorf("the build needed more than its %d MiB of memory; simplify the kustomization or split it",
				r.limits.MemoryBytes>>20)
		}
		if _, reported, found := strings.Cut(msg, errorMarker); found {
			return errors.New(strings.TrimSpace(reported))
		}
		return fmt.Errorf("the build process failed: %s", lastLine(msg))
	}
	return err
}

// errorMarker starts the child's own error on its standard error, after
// whatever kustomize printed there (deprecation warnings).
const errorMarker = "alumiini-kustomize-error: "

// Main is the child: it bounds itself, builds what the parent sent and
// writes the objects as JSON. It never returns.
func Main(args []string) {
	if err := child(args); err != nil {
		fmt.Fprintln(os.Stderr, errorMarker+err.Error())
		os.Exit(1)
	}
	os.Exit(0)
}

func child(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: %s CPU_SECONDS MEMORY_BYTES", Subcommand)
	}
	var cpu, memory uint64
	if _, err := fmt.Sscan(args[0], &cpu); err != nil {
		return fmt.Errorf("cpu seconds: %w", err)
	}
	if _, err := fmt.Sscan(args[1], &memory); err != nil {
		return fmt.Errorf("memory bytes: %w", err)
	}
	// Past the soft CPU limit the kernel sends SIGXCPU, which ends the child.
	if err := syscall.Setrlimit(syscall.RLIMIT_CPU, &syscall.Rlimit{Cur: cpu, Max: cpu + 1}); err != nil {
		return fmt.Errorf("limiting CPU time: %w", err)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_DATA, &syscall.Rlimit{Cur: memory, Max: memory}); err != nil {
		return fmt.Errorf("limiting memory: %w", err)
	}
	var req request
	if err := gob.NewDecoder(os.Stdin).Decode(&req); err != nil {
		return fmt.Errorf("reading the build request: %w", err)
	}
	out, err := manifest.BuildJSON(req.Files, req.Dir)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}

func lastLine(s string) string {
	lines := strings.Split(s, "\n")
	return lines[len(lines)-1]
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
