package controller

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
)

// TestKstatusReadsEveryState: what kstatus-aware tools (cli-utils'
// status.Compute, as kubectl wait-style tools, Flux and Argo CD health
// checks use) make of a GitRepository in each state.
func TestKstatusReadsEveryState(t *testing.T) {
	drifted := func(state v1alpha1.DriftState) *v1alpha1.DriftStatus {
		return &v1alpha1.DriftStatus{Drifted: 1, Objects: []v1alpha1.DriftedObject{{Kind: "ConfigMap", Name: "a", State: state}}}
	}
	for _, tc := range []struct {
		name  string
		set   func(s *v1alpha1.GitRepositoryStatus, generation int64)
		stale bool // status written for an older generation
		want  status.Status
	}{
		{"new, as the API server stores it", func(s *v1alpha1.GitRepositoryStatus, _ int64) {
			// What PrepareForCreate writes (pkg/registry/.../strategy.go).
			s.Phase = v1alpha1.PhasePending
			s.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionReconciling, Status: metav1.ConditionTrue, Reason: "Pending"}}
		}, true, status.InProgressStatus},
		{"syncing", func(s *v1alpha1.GitRepositoryStatus, g int64) { markSyncing(s, g, "applying") }, false, status.InProgressStatus},
		{"synced", func(s *v1alpha1.GitRepositoryStatus, g int64) { markSynced(s, g, "applied", nil) }, false, status.CurrentStatus},
		{"failed", func(s *v1alpha1.GitRepositoryStatus, g int64) { markFailed(s, g, "DryRunFailed", "bad object") }, false, status.FailedStatus},
		{"failed, then synced", func(s *v1alpha1.GitRepositoryStatus, g int64) {
			markFailed(s, g, "DryRunFailed", "bad object")
			markSyncing(s, g, "applying")
			markSynced(s, g, "applied", nil)
		}, false, status.CurrentStatus},
		{"worker crash loop", func(s *v1alpha1.GitRepositoryStatus, g int64) { markFailed(s, g, ReasonWorkerCrashed, "panic") }, false, status.FailedStatus},
		{"drift left so (Detect)", func(s *v1alpha1.GitRepositoryStatus, g int64) {
			markSynced(s, g, "applied", drifted(v1alpha1.DriftStateDetected))
		}, false, status.FailedStatus},
		{"drift in its grace period", func(s *v1alpha1.GitRepositoryStatus, g int64) {
			markSynced(s, g, "applied", drifted(v1alpha1.DriftStateGracePeriod))
		}, false, status.InProgressStatus},
		{"drift corrected", func(s *v1alpha1.GitRepositoryStatus, g int64) {
			markSynced(s, g, "applied", drifted(v1alpha1.DriftStateDetected))
			markSynced(s, g, "applied", &v1alpha1.DriftStatus{})
		}, false, status.CurrentStatus},
		{"applied, waiting for health (spec.wait)", func(s *v1alpha1.GitRepositoryStatus, g int64) {
			markSynced(s, g, "applied", nil)
			markHealthPending(s, g, "waiting")
		}, false, status.InProgressStatus},
		{"healthy", func(s *v1alpha1.GitRepositoryStatus, g int64) {
			markSynced(s, g, "applied", nil)
			markHealthPending(s, g, "waiting")
			markHealthy(s, g, "healthy")
		}, false, status.CurrentStatus},
		{"not healthy in time", func(s *v1alpha1.GitRepositoryStatus, g int64) {
			markSynced(s, g, "applied", nil)
			markUnhealthy(s, g, ReasonHealthTimeout, "Deployment a/web: InProgress")
		}, false, status.FailedStatus},
		{"not healthy in time, then a drift re-check", func(s *v1alpha1.GitRepositoryStatus, g int64) {
			markUnhealthy(s, g, ReasonHealthTimeout, "Deployment a/web: InProgress")
			markSynced(s, g, "applied", nil)
			healthConditions(s, g, true)
		}, false, status.FailedStatus},
		{"drift left so (Detect), whatever the health", func(s *v1alpha1.GitRepositoryStatus, g int64) {
			markSynced(s, g, "applied", drifted(v1alpha1.DriftStateDetected))
			markHealthPending(s, g, "waiting")
			markHealthy(s, g, "healthy")
		}, false, status.FailedStatus},
		{"suspended while a wait ran out", func(s *v1alpha1.GitRepositoryStatus, g int64) {
			markSuspended(s, g, "suspended")
			markUnhealthy(s, g, ReasonHealthTimeout, "Deployment a/web: InProgress")
		}, false, status.InProgressStatus},
		{"spec changed since the last sync", func(s *v1alpha1.GitRepositoryStatus, g int64) { markSynced(s, g-1, "applied", nil) }, true, status.InProgressStatus},
	} {
		repo := &v1alpha1.GitRepository{TypeMeta: metav1.TypeMeta{APIVersion: "alumiini.false.systems/v1alpha1", Kind: "GitRepository"},
			ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "team", Generation: 3}}
		tc.set(&repo.Status, repo.Generation)
		if !tc.stale {
			repo.Status.ObservedGeneration = repo.Generation
		} else if len(repo.Status.Conditions) > 0 {
			repo.Status.ObservedGeneration = repo.Generation - 1
		}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(repo)
		if err != nil {
			t.Fatal(err)
		}
		result, err := status.Compute(&unstructured.Unstructured{Object: obj})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if result.Status != tc.want {
			t.Errorf("%s: kstatus says %s (%s), want %s", tc.name, result.Status, result.Message, tc.want)
		}
	}
}
