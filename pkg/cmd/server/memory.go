package server

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// MemoryOptions set Go's soft memory limit (GOMEMLIMIT) from the
// container's memory limit.
//
// The API server, the controller and the embedded etcd share one process,
// so an OOM kill stops all three. Go's collector lets the heap grow to
// twice what is live before it collects (GOGC=100); under a soft limit it
// collects sooner as the process nears it, and only then.
type MemoryOptions struct {
	// LimitRatio is the fraction of the memory the container's limit
	// leaves after the kustomize builds' children that Go may use; 0 off.
	LimitRatio float64
}

const defaultMemoryLimitRatio = 0.9

func newMemoryOptions() MemoryOptions { return MemoryOptions{LimitRatio: defaultMemoryLimitRatio} }

// AddFlags adds the memory flags to fs.
func (o *MemoryOptions) AddFlags(fs *pflag.FlagSet) {
	fs.Float64Var(&o.LimitRatio, "memory-limit-ratio", o.LimitRatio,
		"Go's soft memory limit (GOMEMLIMIT) as this fraction of what the container's memory limit (its cgroup's, read at start) "+
			"leaves after the kustomize builds' children (--max-concurrent-kustomize-builds × --kustomize-memory-bytes): "+
			"near it the garbage collector works harder, instead of the process, with its API server, controller and etcd, "+
			"being OOM-killed. 0: no soft limit. A GOMEMLIMIT environment variable wins.")
}

// Validate checks the ratio.
func (o *MemoryOptions) Validate() []error {
	if math.IsNaN(o.LimitRatio) || o.LimitRatio < 0 || o.LimitRatio > 1 {
		return []error{fmt.Errorf("--memory-limit-ratio must be from 0 (no soft memory limit) to 1, got %v", o.LimitRatio)}
	}
	return nil
}

// apply sets GOMEMLIMIT to LimitRatio of the container's memory limit less
// children, the most the kustomize builds' processes may hold at once (they
// are in the same container). Nothing here stops the server: without a
// readable limit Go runs as it would without this.
func (o *MemoryOptions) apply(children uint64) {
	if o.LimitRatio == 0 {
		return
	}
	if value, set := os.LookupEnv("GOMEMLIMIT"); set {
		klog.InfoS("GOMEMLIMIT is set, so Go's soft memory limit is not derived from the container's", "GOMEMLIMIT", value)
		return
	}
	// memlimit reads cgroup v1 and v2, the limits of enclosing cgroups
	// included, wherever the container runtime mounted them.
	container, err := memlimit.FromCgroup()
	switch {
	case errors.Is(err, memlimit.ErrNoLimit):
		klog.V(1).InfoS("The container has no memory limit; no soft memory limit is set")
		return
	case err != nil:
		klog.ErrorS(err, "Could not read the container's memory limit; no soft memory limit is set")
		return
	case container <= children:
		klog.InfoS("Warning: the container's memory limit leaves nothing for alumiini beside the kustomize builds' children; "+
			"no soft memory limit is set. Raise the limit, or lower --kustomize-memory-bytes or --max-concurrent-kustomize-builds",
			"containerLimitBytes", container, "kustomizeChildrenBytes", children)
		return
	}
	limit := int64(float64(container-children) * o.LimitRatio)
	debug.SetMemoryLimit(limit)
	klog.InfoS("Go's soft memory limit (GOMEMLIMIT) set from the container's", "limitBytes", limit,
		"containerLimitBytes", container, "kustomizeChildrenBytes", children, "ratio", o.LimitRatio)
}
