package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime"
)

// Defaults a GitRepository gets when the user leaves a field out.
const (
	DefaultBranch   = "main"
	DefaultInterval = "5m"
	DefaultTimeout  = "1m"
	// DefaultRolloutAPIVersion is KULTA's: spec.rolloutRef: {name: ...}
	// names a KULTA Rollout.
	DefaultRolloutAPIVersion = "kulta.io/v1alpha1"
	// DefaultSyncWaitSeconds is how long a sync request with wait: true blocks
	// when it names no timeoutSeconds.
	DefaultSyncWaitSeconds int32 = 20
)

func addDefaultingFuncs(scheme *runtime.Scheme) error {
	return RegisterDefaults(scheme)
}

// SetDefaults_GitRepositorySpec fills in the branch (unless a tag or commit is
// pinned), the interval, the timeout and pruning.
func SetDefaults_GitRepositorySpec(obj *GitRepositorySpec) {
	if obj.Branch == "" && obj.Tag == "" && obj.Commit == "" {
		obj.Branch = DefaultBranch
	}
	if obj.Interval == "" {
		obj.Interval = DefaultInterval
	}
	if obj.Timeout == "" {
		obj.Timeout = DefaultTimeout
	}
	if obj.Prune == nil {
		prune := true
		obj.Prune = &prune
	}
	if obj.Drift != nil && obj.Drift.Mode == "" {
		obj.Drift.Mode = DriftCorrect
	}
	if obj.Drift != nil && obj.Drift.AllowBreakGlass == nil {
		allow := true
		obj.Drift.AllowBreakGlass = &allow
	}
	if obj.RolloutRef != nil {
		if obj.RolloutRef.APIVersion == "" {
			obj.RolloutRef.APIVersion = DefaultRolloutAPIVersion
		}
		if obj.RolloutRef.Kind == "" {
			obj.RolloutRef.Kind = "Rollout"
		}
	}
}

// SetDefaults_GitRepositorySyncRequestSpec gives a waiting request its default
// timeout.
func SetDefaults_GitRepositorySyncRequestSpec(obj *GitRepositorySyncRequestSpec) {
	if obj.Wait && obj.TimeoutSeconds == nil {
		timeout := DefaultSyncWaitSeconds
		obj.TimeoutSeconds = &timeout
	}
}
