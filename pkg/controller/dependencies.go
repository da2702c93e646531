package controller

import (
	"context"
	"fmt"
	"strings"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
)

// The reasons a GitRepository waits for its spec.dependsOn.
const (
	ReasonDependencyNotReady = "DependencyNotReady"
	ReasonDependencyCycle    = "DependencyCycle"
)

// indexDependsOn indexes GitRepositories by the keys of their dependencies,
// so a dependency turning Ready finds its dependents at once.
const indexDependsOn = "dependsOn"

// maxDependencyWalk bounds the GitRepositories one cycle check visits.
const maxDependencyWalk = 1000

func dependencyKeys(repo *v1alpha1.GitRepository) []string {
	keys := make([]string, 0, len(repo.Spec.DependsOn))
	for _, d := range repo.Spec.DependsOn {
		namespace := d.Namespace
		if namespace == "" {
			namespace = repo.Namespace
		}
		keys = append(keys, namespace+"/"+d.Name)
	}
	return keys
}

// readyForDependents: Ready at the commit it last attempted, for its current
// spec, with no sync request pending; otherwise why not.
func readyForDependents(dep *v1alpha1.GitRepository) (bool, string) {
	ready := apimeta.FindStatusCondition(dep.Status.Conditions, v1alpha1.ConditionReady)
	s := dep.Status
	switch {
	case dep.DeletionTimestamp != nil:
		return false, "it is being deleted"
	case ready == nil || ready.Status != metav1.ConditionTrue:
		reason := "not synced yet"
		if ready != nil {
			reason = ready.Reason
		}
		return false, "it is not Ready (" + reason + ")"
	case s.ObservedGeneration != dep.Generation:
		return false, "its spec changed and is not synced yet"
	case s.LastAttemptedCommit != "" && s.LastAttemptedCommit != s.LastSyncedCommit:
		// Not the commit: a dependency in another namespace is only read
		// for whether it is Ready.
		return false, "it has not synced the commit it last attempted"
	case s.PendingSyncRequest != nil:
		return false, "a sync request of it is pending"
	}
	return true, ""
}

// blockedByDependencies says why repo may not sync yet (a reason and a
// message), or "" when every dependency is Ready.
func (r *Reconciler) blockedByDependencies(repo *v1alpha1.GitRepository) (string, string) {
	for _, key := range dependencyKeys(repo) {
		namespace, name, _ := strings.Cut(key, "/")
		dep, err := r.Lister.GitRepositories(namespace).Get(name)
		why := "it does not exist"
		if err == nil {
			var ok bool
			if ok, why = readyForDependents(dep); ok {
				continue
			}
		}
		// Only then can there be a cycle: every member waits for another.
		if cycle := r.dependencyCycle(repo); cycle != "" {
			return ReasonDependencyCycle, truncate("spec.dependsOn forms a cycle: " + cycle + "; nothing is synced until it is broken")
		}
		if namespace != repo.Namespace {
			// Another namespace's: whether it is Ready, nothing more of it.
			why = "it does not exist or is not Ready"
		}
		return ReasonDependencyNotReady, fmt.Sprintf("waiting for dependency %s: %s", key, why)
	}
	return "", ""
}

// dependencyCycle returns the path of a cycle through repo's dependencies
// back to repo ("a/x → a/y → a/x"), or "".
func (r *Reconciler) dependencyCycle(repo *v1alpha1.GitRepository) string {
	self := repo.Namespace + "/" + repo.Name
	visited := map[string]bool{}
	var walk func(key string, path []string) []string
	walk = func(key string, path []string) []string {
		if key == self {
			return append(path, key)
		}
		if visited[key] || len(visited) >= maxDependencyWalk {
			return nil
		}
		visited[key] = true
		namespace, name, _ := strings.Cut(key, "/")
		dep, err := r.Lister.GitRepositories(namespace).Get(name)
		if err != nil {
			return nil
		}
		for _, next := range dependencyKeys(dep) {
			if found := walk(next, append(path, key)); found != nil {
				return found
			}
		}
		return nil
	}
	for _, key := range dependencyKeys(repo) {
		if path := walk(key, []string{self}); path != nil {
			return strings.Join(path, " → ")
		}
	}
	return ""
}

// waitForDependencies writes why repo waits, unless the status says so
// already.
func (r *Reconciler) waitForDependencies(ctx context.Context, repo *v1alpha1.GitRepository, reason, message string) {
	r.health.stop(repo.Namespace + "/" + repo.Name) // it would judge a spec not applied
	ready := apimeta.FindStatusCondition(repo.Status.Conditions, v1alpha1.ConditionReady)
	if ready != nil && ready.Reason == reason && ready.Message == message && repo.Status.ObservedGeneration == repo.Generation {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, statusWriteTimeout)
	defer cancel()
	err := r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		s.ObservedGeneration = generation
		s.Message = message
		if reason == ReasonDependencyCycle {
			markFailed(s, generation, reason, withFix(reason, message, maxMessageBytes))
			return
		}
		markWaiting(s, generation, reason, message)
	})
	if err != nil {
		klog.FromContext(ctx).Error(err, "Writing status")
		return
	}
	r.Recorder.Event(repo, "Normal", reason, withFix(reason, message, eventMessageBytes))
}
