package controller

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	listers "github.com/falsesystems/alumiini/pkg/generated/listers/alumiini/v1alpha1"
)

func dependent(namespace, name string, deps ...v1alpha1.DependencyReference) *v1alpha1.GitRepository {
	return &v1alpha1.GitRepository{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Generation: 1},
		Spec: v1alpha1.GitRepositorySpec{DependsOn: deps}}
}

func readyAt(repo *v1alpha1.GitRepository, commit string) *v1alpha1.GitRepository {
	repo.Status = v1alpha1.GitRepositoryStatus{ObservedGeneration: repo.Generation, LastSyncedCommit: commit, LastAttemptedCommit: commit,
		Conditions: []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: ReasonSucceeded}}}
	return repo
}

func reconcilerOver(t *testing.T, repos ...*v1alpha1.GitRepository) *Reconciler {
	t.Helper()
	index := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, r := range repos {
		if err := index.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	return &Reconciler{Lister: listers.NewGitRepositoryLister(index)}
}

// TestDependenciesGateTheSync: a GitRepository waits for each dependency
// to be Ready at the commit it last attempted, names the one it waits for,
// and reports a cycle with its path.
func TestDependenciesGateTheSync(t *testing.T) {
	infra := readyAt(dependent("platform", "infra"), "c1")
	failing := readyAt(dependent("platform", "db"), "c1")
	failing.Status.LastAttemptedCommit = "c2"
	app := dependent("team", "app", v1alpha1.DependencyReference{Name: "infra", Namespace: "platform"})
	r := reconcilerOver(t, infra, failing, app)
	if reason, msg := r.blockedByDependencies(app); reason != "" {
		t.Errorf("a Ready dependency blocks: %s %s", reason, msg)
	}

	app.Spec.DependsOn = append(app.Spec.DependsOn, v1alpha1.DependencyReference{Name: "db", Namespace: "platform"})
	if reason, msg := r.blockedByDependencies(app); reason != ReasonDependencyNotReady || !strings.Contains(msg, "platform/db") ||
		strings.Contains(msg, "commit") {
		t.Errorf("another namespace's dependency behind its last attempt: %s %s (want only whether it is Ready)", reason, msg)
	}
	web := dependent("platform", "web", v1alpha1.DependencyReference{Name: "db"})
	if reason, msg := reconcilerOver(t, failing, web).blockedByDependencies(web); reason != ReasonDependencyNotReady ||
		!strings.Contains(msg, "not synced the commit it last attempted") {
		t.Errorf("a dependency of its own namespace behind its last attempt: %s %s", reason, msg)
	}
	app.Spec.DependsOn = []v1alpha1.DependencyReference{{Name: "missing"}}
	if reason, msg := r.blockedByDependencies(app); reason != ReasonDependencyNotReady || !strings.Contains(msg, "team/missing: it does not exist") {
		t.Errorf("a missing dependency: %s %s", reason, msg)
	}

	a := dependent("team", "a", v1alpha1.DependencyReference{Name: "b"})
	b := dependent("team", "b", v1alpha1.DependencyReference{Name: "c"})
	c := readyAt(dependent("team", "c", v1alpha1.DependencyReference{Name: "a"}), "c1")
	r = reconcilerOver(t, a, b, c)
	if reason, msg := r.blockedByDependencies(a); reason != ReasonDependencyCycle || !strings.Contains(msg, "team/a → team/b → team/c → team/a") {
		t.Errorf("a cycle: %s %s", reason, msg)
	}
}
