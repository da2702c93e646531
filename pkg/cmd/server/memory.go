package server

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"sync"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/kustomizeproc"
)

// MemoryOptions set Go's soft memory limit (GOMEMLIMIT) from the
// container's memory limit.
//
// The API server, the controller and the embedded etcd share one process,
// so an OOM kill stops all three. Go's collector lets the heap grow to
// twice what is live before it collects (GOGC=100); under a soft limit it
// collects sooner as the process nears it, and only then. That makes an OOM
// kill less likely; it cannot prevent one when what is live outgrows the
// limit.
type MemoryOptions struct {
	// LimitRatio is the fraction of the container's memory limit, less
	// what the kustomize builds running may hold, that Go may use; 0 off.
	LimitRatio float64
}

const defaultMemoryLimitRatio = 0.9

// minSoftMemoryLimit: no smaller soft limit is set. alumiini at work holds
// more than that (about 145 MiB peak through the end-to-end suite, 186-209
// MiB settled at 1,000 GitRepositories, docs/scale.md), and a limit under
// what is live keeps the collector running, on up to half the CPU, without
// freeing anything.
const minSoftMemoryLimit = 256 << 20

func newMemoryOptions() MemoryOptions { return MemoryOptions{LimitRatio: defaultMemoryLimitRatio} }

// AddFlags adds the memory flags to fs.
func (o *MemoryOptions) AddFlags(fs *pflag.FlagSet) {
	fs.Float64Var(&o.LimitRatio, "memory-limit-ratio", o.LimitRatio,
		"Sets Go's soft memory limit (GOMEMLIMIT) to this fraction of what the container's memory limit (read at start) "+
			"leaves after --kustomize-memory-bytes for each kustomize build running: 2.7 GiB of a 3Gi limit, about 922 MiB "+
			"while two builds run. Near it the garbage collector runs sooner, so an OOM kill, which stops the API server, "+
			"the controller and etcd together, is less likely. Never under 256 MiB: held there while builds leave less, "+
			"and none if the container's limit is too small for it. 0 disables; a GOMEMLIMIT environment variable overrides it.")
}

// Validate checks the ratio.
func (o *MemoryOptions) Validate() []error {
	if math.IsNaN(o.LimitRatio) || o.LimitRatio < 0 || o.LimitRatio > 1 {
		return []error{fmt.Errorf("--memory-limit-ratio must be from 0 (no soft memory limit) to 1, got %v", o.LimitRatio)}
	}
	return nil
}

// softMemoryLimit is ratio of what container (a memory limit in bytes)
// leaves after children, or false when that is under minSoftMemoryLimit.
func softMemoryLimit(container, children uint64, ratio float64) (int64, bool) {
	if container <= children {
		return 0, false
	}
	limit := float64(container-children) * ratio
	if limit < minSoftMemoryLimit {
		return 0, false
	}
	if limit >= math.MaxInt64 { // float64(math.MaxInt64) rounds up to 2⁶³
		return math.MaxInt64, true
	}
	return int64(limit), true
}

// softMemoryLimiter keeps Go's soft memory limit at ratio of what the
// container's memory limit leaves after the kustomize builds running at the
// moment, each of which may hold perBuild bytes.
type softMemoryLimiter struct {
	container, perBuild uint64
	ratio               float64
	logger              klog.Logger

	mu      sync.Mutex
	running int
}

// newSoftMemoryLimiter reads the container's memory limit and sets Go's
// soft memory limit from it, with no build running. It returns nil, and Go
// runs as it would without this, when the ratio is 0, GOMEMLIMIT is set in
// the environment, or there is no limit to read. Nothing here stops the
// server.
func (o *MemoryOptions) newSoftMemoryLimiter(logger klog.Logger, builds kustomizeproc.Limits) *softMemoryLimiter {
	if o.LimitRatio == 0 {
		return nil
	}
	if value := os.Getenv("GOMEMLIMIT"); value != "" {
		logger.Info("Soft memory limit taken from GOMEMLIMIT, not from the container's", "gomemlimit", value)
		return nil
	}
	// memlimit reads cgroup v1 and v2, the limits of enclosing cgroups
	// included, wherever the container runtime mounted them.
	container, err := memlimit.FromCgroup()
	switch {
	case errors.Is(err, memlimit.ErrNoLimit), errors.Is(err, memlimit.ErrNoCgroup), errors.Is(err, memlimit.ErrCgroupsNotSupported):
		logger.V(1).Info("No container memory limit; no soft memory limit set", "reason", err.Error())
		return nil
	case err != nil:
		logger.Error(err, "Could not read the container's memory limit; no soft memory limit set")
		return nil
	}
	if _, ok := softMemoryLimit(container, 0, o.LimitRatio); !ok {
		logger.Info("The container's memory limit is too small for a soft memory limit; none set",
			"containerLimitBytes", container, "ratio", o.LimitRatio, "minimumBytes", minSoftMemoryLimit,
			"fix", "raise the container's memory limit")
		return nil
	}
	l := &softMemoryLimiter{container: container, perBuild: builds.MemoryBytes, ratio: o.LimitRatio, logger: logger}
	logger.Info("Soft memory limit set from the container's", "limitBytes", l.set(), "containerLimitBytes", container,
		"ratio", o.LimitRatio, "kustomizeBuildBytes", builds.MemoryBytes)
	if _, ok := softMemoryLimit(container, builds.MostHeld(), o.LimitRatio); !ok {
		logger.Info("While every kustomize build runs, the container's memory limit leaves too little; the soft memory limit is held at its minimum then",
			"containerLimitBytes", container, "kustomizeBuildsBytes", builds.MostHeld(), "minimumBytes", minSoftMemoryLimit,
			"fix", "raise the limit, or lower --kustomize-memory-bytes or --max-concurrent-kustomize-builds")
	}
	return l
}

// Building is told +1 before a kustomize build's child starts and -1 once
// it has exited (kustomizeproc.Runner.WhileBuilding).
func (l *softMemoryLimiter) Building(delta int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running += delta; l.running < 0 {
		l.logger.Error(nil, "More kustomize builds ended than started; the soft memory limit's count is kept at 0",
			"running", l.running, "delta", delta)
		l.running = 0
	}
	l.set()
}

// set sets the limit for the builds running now and returns it. While
// they leave too little it holds the minimum: a tight limit, not none, when
// memory is tightest. (newSoftMemoryLimiter made sure that with no build
// running the limit is at least that.)
func (l *softMemoryLimiter) set() int64 {
	running, children := uint64(l.running), uint64(math.MaxUint64)
	if running == 0 || l.perBuild <= math.MaxUint64/running {
		children = running * l.perBuild
	}
	limit, ok := softMemoryLimit(l.container, children, l.ratio)
	if !ok {
		limit = minSoftMemoryLimit
	}
	debug.SetMemoryLimit(limit)
	l.logger.V(4).Info("Soft memory limit", "limitBytes", limit, "kustomizeBuilds", l.running)
	return limit
}
