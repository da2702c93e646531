package controller

import (
	"fmt"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
)

// The conditions of a GitRepository follow kstatus (sigs.k8s.io/cli-utils,
// status.Compute), so kubectl, Flux's and Argo CD's health checks and any
// kstatus-aware tool read them right:
//
//	syncing                      Reconciling=True                  → InProgress
//	synced                       Ready=True                        → Current
//	failed (retried with backoff) Ready=False, Stalled=True          → Failed
//	drift left so (Detect)       Ready=False, Stalled=True Drifted → Failed
//	drift to be corrected        Ready=False, Reconciling=True     → InProgress
//	suspended                    Ready=False Suspended             → InProgress
//
// A new generation computes as InProgress until observedGeneration catches up.

func condition(s *v1alpha1.GitRepositoryStatus, generation int64, kind string, status metav1.ConditionStatus, reason, message string) {
	apimeta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: kind, Status: status, Reason: reason,
		Message: truncate(message), ObservedGeneration: generation})
}

// markSyncing: a sync that will apply has started.
func markSyncing(s *v1alpha1.GitRepositoryStatus, generation int64, message string) {
	condition(s, generation, v1alpha1.ConditionReconciling, metav1.ConditionTrue, ReasonProgressing, message)
	condition(s, generation, v1alpha1.ConditionReady, metav1.ConditionUnknown, ReasonProgressing, message)
	condition(s, generation, v1alpha1.ConditionStalled, metav1.ConditionFalse, ReasonProgressing, message)
}

// markSynced: the commit is applied and, as far as drift handling knows,
// still holds; otherwise see markDrifted.
func markSynced(s *v1alpha1.GitRepositoryStatus, generation int64, message string, drift *v1alpha1.DriftStatus) {
	if drift != nil && drift.Drifted > 0 {
		markDrifted(s, generation, message, drift)
		return
	}
	condition(s, generation, v1alpha1.ConditionReady, metav1.ConditionTrue, ReasonSucceeded, message)
	condition(s, generation, v1alpha1.ConditionReconciling, metav1.ConditionFalse, ReasonSucceeded, "sync finished")
	condition(s, generation, v1alpha1.ConditionStalled, metav1.ConditionFalse, ReasonSucceeded, "sync finished")
}

// markDrifted: objects differ from git and are left so. Corrections still
// due (a grace period, a fight's backoff) read as in progress; Detect, which
// corrects nothing, as failed until someone acts.
func markDrifted(s *v1alpha1.GitRepositoryStatus, generation int64, message string, drift *v1alpha1.DriftStatus) {
	detail := fmt.Sprintf("%d objects differ from git (see status.drift)", drift.Drifted)
	corrected := false
	for _, o := range drift.Objects {
		if o.State == v1alpha1.DriftStateGracePeriod || o.State == v1alpha1.DriftStateBackingOff {
			corrected = true
		}
	}
	if len(drift.Objects) > 0 {
		o := drift.Objects[0]
		detail += fmt.Sprintf(", e.g. %s %s/%s: %s", o.Kind, o.Namespace, o.Name, o.Message)
	}
	message += "; " + detail
	condition(s, generation, v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonDrifted, message)
	if corrected {
		condition(s, generation, v1alpha1.ConditionReconciling, metav1.ConditionTrue, ReasonDrifted, detail)
		condition(s, generation, v1alpha1.ConditionStalled, metav1.ConditionFalse, ReasonDrifted, detail)
		return
	}
	condition(s, generation, v1alpha1.ConditionReconciling, metav1.ConditionFalse, ReasonDrifted, detail)
	condition(s, generation, v1alpha1.ConditionStalled, metav1.ConditionTrue, ReasonDrifted, detail)
}

// markFailed: the sync failed for reason; the last good state stays applied
// and the worker retries with backoff. Stalled says so until a sync succeeds.
func markFailed(s *v1alpha1.GitRepositoryStatus, generation int64, reason, message string) {
	condition(s, generation, v1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	condition(s, generation, v1alpha1.ConditionReconciling, metav1.ConditionFalse, reason, "sync failed; retried with backoff")
	condition(s, generation, v1alpha1.ConditionStalled, metav1.ConditionTrue, reason, message)
}

// markSuspended: nothing is synced until spec.suspend is false again.
func markSuspended(s *v1alpha1.GitRepositoryStatus, generation int64, message string) {
	condition(s, generation, v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonSuspended, message)
	condition(s, generation, v1alpha1.ConditionReconciling, metav1.ConditionFalse, ReasonSuspended, message)
	condition(s, generation, v1alpha1.ConditionStalled, metav1.ConditionFalse, ReasonSuspended, message)
}

// Health only ever speaks for Ready when Ready would otherwise be True, or
// already speaks of health: a failure, drift or suspension says more.
func readyFollowsHealth(s *v1alpha1.GitRepositoryStatus) bool {
	ready := apimeta.FindStatusCondition(s.Conditions, v1alpha1.ConditionReady)
	return ready == nil || ready.Status == metav1.ConditionTrue || healthReason(ready.Reason)
}

// healthReason: Ready says what a health wait found.
func healthReason(reason string) bool {
	return reason == ReasonHealthCheckPending || reason == ReasonHealthTimeout || reason == ReasonRolloutFailed || reason == ReasonRolledBack
}

// markHealthPending: applied; with spec.wait, Ready waits for Healthy.
func markHealthPending(s *v1alpha1.GitRepositoryStatus, generation int64, message string) {
	condition(s, generation, v1alpha1.ConditionHealthy, metav1.ConditionUnknown, ReasonHealthCheckPending, message)
	if !readyFollowsHealth(s) {
		return
	}
	condition(s, generation, v1alpha1.ConditionReady, metav1.ConditionFalse, ReasonHealthCheckPending, message)
	condition(s, generation, v1alpha1.ConditionReconciling, metav1.ConditionTrue, ReasonHealthCheckPending, message)
	condition(s, generation, v1alpha1.ConditionStalled, metav1.ConditionFalse, ReasonHealthCheckPending, message)
}

// markHealthy: what was applied is healthy; Ready, if it waited for that,
// is True now.
func markHealthy(s *v1alpha1.GitRepositoryStatus, generation int64, message string) {
	condition(s, generation, v1alpha1.ConditionHealthy, metav1.ConditionTrue, ReasonHealthy, message)
	ready := apimeta.FindStatusCondition(s.Conditions, v1alpha1.ConditionReady)
	if ready == nil || !healthReason(ready.Reason) {
		return
	}
	condition(s, generation, v1alpha1.ConditionReady, metav1.ConditionTrue, ReasonSucceeded, message)
	condition(s, generation, v1alpha1.ConditionReconciling, metav1.ConditionFalse, ReasonSucceeded, message)
	condition(s, generation, v1alpha1.ConditionStalled, metav1.ConditionFalse, ReasonSucceeded, message)
}

// markUnhealthy: what was applied did not become healthy in time
// (HealthTimeout), or its Rollout failed or rolled back (that reason);
// kstatus reads Failed until a sync or a later wait says otherwise.
func markUnhealthy(s *v1alpha1.GitRepositoryStatus, generation int64, reason, message string) {
	condition(s, generation, v1alpha1.ConditionHealthy, metav1.ConditionFalse, reason, message)
	if !readyFollowsHealth(s) {
		return
	}
	condition(s, generation, v1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	condition(s, generation, v1alpha1.ConditionReconciling, metav1.ConditionFalse, reason, message)
	condition(s, generation, v1alpha1.ConditionStalled, metav1.ConditionTrue, reason, message)
}

// markWaiting: nothing is synced until something else is ready (a
// dependency); kstatus reads InProgress.
func markWaiting(s *v1alpha1.GitRepositoryStatus, generation int64, reason, message string) {
	condition(s, generation, v1alpha1.ConditionReady, metav1.ConditionFalse, reason, message)
	condition(s, generation, v1alpha1.ConditionReconciling, metav1.ConditionTrue, reason, message)
	condition(s, generation, v1alpha1.ConditionStalled, metav1.ConditionFalse, reason, message)
}
