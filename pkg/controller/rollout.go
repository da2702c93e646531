package controller

import (
	"context"
	"fmt"
	"strconv"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/apply"
)

// The reasons of the RolledOut condition.
const (
	ReasonRolloutProgressing = "RolloutProgressing"
	ReasonRolledOut          = "RolledOut"
	ReasonRolloutFailed      = "RolloutFailed"
	ReasonRolledBack         = "RolledBack"
	ReasonRolloutPaused      = "RolloutPaused"
	ReasonRolloutTimeout     = "RolloutTimeout"
	ReasonRolloutNotFound    = "RolloutNotFound"
)

// KULTA's phases; an Argo Rollout's are read as these.
const (
	rolloutProgressing = "Progressing"
	rolloutPaused      = "Paused"
	rolloutCompleted   = "Completed"
	rolloutFailed      = "Failed"
)

// argoPhases maps an Argo Rollout's phase to KULTA's.
var argoPhases = map[string]string{"Healthy": rolloutCompleted, "Progressing": rolloutProgressing,
	"Paused": rolloutPaused, "Degraded": rolloutFailed}

// rolloutVerdict is what a wait made of the Rollout.
type rolloutVerdict struct {
	reason  string // "" while it progresses
	message string
	phase   string
}

// failed: the Rollout failed or rolled back; waiting longer changes nothing.
func (v rolloutVerdict) failed() bool {
	return v.reason == ReasonRolloutFailed || v.reason == ReasonRolledBack
}

// outcome is the verdict as the RolledOut condition, once the wait is over:
// still progressing then means paused or too slow.
func (v rolloutVerdict) outcome(timeout time.Duration) rolloutVerdict {
	switch {
	case v.reason != "":
		return v
	case v.phase == rolloutPaused:
		return rolloutVerdict{reason: ReasonRolloutPaused, message: fmt.Sprintf("still paused after %s: %s", timeout, v.message)}
	}
	return rolloutVerdict{reason: ReasonRolloutTimeout, message: fmt.Sprintf("not complete after %s: %s", timeout, v.message)}
}

func (w *healthWatch) rolloutFailed() bool { return w.verdict.failed() }

// rolloutMissing records that the Rollout cannot be read, and says so as
// an unhealthy target.
func (w *healthWatch) rolloutMissing(t healthTarget, why string) string {
	message := fmt.Sprintf("%s: %s", t, why)
	w.verdict = rolloutVerdict{reason: ReasonRolloutNotFound, message: message}
	w.rollout = &v1alpha1.RolloutStatus{Message: message, ObservedAt: metav1.Now()}
	return message
}

// judgeRollout reads a KULTA (or Argo) Rollout: its phase, step, weight and
// message into w.rollout, and whether it completed for this revision,
// failed or rolled back into w.verdict. It says why it is not done yet, or "".
func (w *healthWatch) judgeRollout(t healthTarget, u *unstructured.Unstructured) string {
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	if t.gvk.Group == "argoproj.io" {
		phase = argoPhases[phase]
	}
	phase = shorten(phase, 64, "…") // whoever writes the Rollout's status writes it
	message, _, _ := unstructured.NestedString(u.Object, "status", "message")
	message = brief(message) // whoever writes the Rollout's status writes it
	seen := v1alpha1.RolloutStatus{Phase: phase, Message: message, ObservedAt: metav1.Now(),
		Step: nestedInt32(u, "status", "currentStepIndex"), Weight: nestedInt32(u, "status", "currentWeight")}
	if w.rollout != nil && w.rollout.Phase == seen.Phase && w.rollout.Message == seen.Message &&
		equalInt32(w.rollout.Step, seen.Step) && equalInt32(w.rollout.Weight, seen.Weight) {
		seen.ObservedAt = w.rollout.ObservedAt // unchanged: no new status write
	}
	w.rollout = &seen
	w.verdict = rolloutVerdict{phase: phase, message: message}
	switch {
	case !observedCurrentGeneration(u) || !statusWrittenSince(u, t.changedAt):
		w.verdict.message = "the Rollout has not picked the new revision up yet"
	case phase == rolloutFailed && lastDecision(u) == "Rollback":
		w.verdict.reason, w.verdict.message = ReasonRolledBack, "rolled back: "+message
	case phase == rolloutFailed:
		w.verdict.reason, w.verdict.message = ReasonRolloutFailed, "failed: "+message
	case phase == rolloutCompleted:
		w.verdict.reason, w.verdict.message = ReasonRolledOut, "completed"
		return ""
	}
	return fmt.Sprintf("%s: %s: %s", t, phase, w.verdict.message)
}

// observedCurrentGeneration: the Rollout's status is about its current spec
// (status.observedGeneration, a number or, in Argo, a string), when it says.
func observedCurrentGeneration(u *unstructured.Unstructured) bool {
	raw, found, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "observedGeneration")
	if !found {
		return true
	}
	var observed int64
	switch v := raw.(type) {
	case int64:
		observed = v
	case float64:
		observed = int64(v)
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return true // Argo's older form is a hash, not a generation
		}
		observed = n
	}
	return observed >= u.GetGeneration()
}

// rolloutChangedAt is now if the sync just wrote spec.rolloutRef's Rollout
// (its new revision is KULTA's to pick up), else zero.
func rolloutChangedAt(repo *v1alpha1.GitRepository, result *apply.Result) time.Time {
	ref := repo.Spec.RolloutRef
	if ref == nil {
		return time.Time{}
	}
	gv, _ := schema.ParseGroupVersion(ref.APIVersion)
	for _, c := range result.Changes {
		if c.Written && c.Group == gv.Group && c.Kind == ref.Kind && c.Name == ref.Name && c.Namespace == targetNamespace(repo) {
			return time.Now()
		}
	}
	return time.Time{}
}

// statusWrittenSince: the Rollout's status was written (by KULTA, through
// its status subresource) no earlier than the second this sync changed the
// Rollout; a KULTA Rollout's status says no observedGeneration, so only
// this tells a phase of the new revision from the last one's. A zero
// changedAt (the sync did not change the Rollout) asks nothing.
func statusWrittenSince(u *unstructured.Unstructured, changedAt time.Time) bool {
	if changedAt.IsZero() {
		return true
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "observedGeneration"); found {
		return true // observedCurrentGeneration says
	}
	for _, m := range u.GetManagedFields() {
		if m.Subresource == "status" && m.Time != nil && !m.Time.Time.Before(changedAt.Truncate(time.Second)) {
			return true
		}
	}
	return false
}

// lastDecision is the action of the newest entry of KULTA's status.decisions.
func lastDecision(u *unstructured.Unstructured) string {
	decisions, _, _ := unstructured.NestedSlice(u.Object, "status", "decisions")
	if len(decisions) == 0 {
		return ""
	}
	last, _ := decisions[len(decisions)-1].(map[string]any)
	action, _ := last["action"].(string)
	return action
}

func nestedInt32(u *unstructured.Unstructured, fields ...string) *int32 {
	v, found, err := unstructured.NestedInt64(u.Object, fields...)
	if !found || err != nil {
		return nil
	}
	n := int32(v)
	return &n
}

func equalInt32(a, b *int32) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

// reportRollout shows, while the wait runs, what the Rollout is doing.
func (r *Reconciler) reportRollout(ctx context.Context, repo *v1alpha1.GitRepository, commit string, current func() bool,
	seen v1alpha1.RolloutStatus) {
	ctx, cancel := context.WithTimeout(ctx, statusWriteTimeout)
	defer cancel()
	err := r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		if !current() || s.LastSyncedCommit != commit || s.ObservedGeneration != generation {
			return
		}
		s.Rollout = &seen
		condition(s, generation, v1alpha1.ConditionRolledOut, metav1.ConditionUnknown, ReasonRolloutProgressing,
			fmt.Sprintf("Rollout %s: %s", repo.Spec.RolloutRef.Name, rolloutSummary(seen)))
	})
	if err != nil {
		klog.FromContext(ctx).Error(err, "Writing status")
	}
}

func rolloutSummary(s v1alpha1.RolloutStatus) string {
	out := s.Phase
	if s.Step != nil {
		out += fmt.Sprintf(", step %d", *s.Step)
	}
	if s.Weight != nil {
		out += fmt.Sprintf(", weight %d%%", *s.Weight)
	}
	if s.Message != "" {
		out += ": " + s.Message
	}
	return out
}

// rolloutConditions keeps RolledOut and status.rollout in step with
// spec.rolloutRef: a sync that applied starts following it anew; without
// it, both are dropped.
func rolloutConditions(s *v1alpha1.GitRepositoryStatus, generation int64, ref *v1alpha1.RolloutReference, applied bool) {
	if ref == nil {
		apimeta.RemoveStatusCondition(&s.Conditions, v1alpha1.ConditionRolledOut)
		s.Rollout = nil
		return
	}
	if applied {
		condition(s, generation, v1alpha1.ConditionRolledOut, metav1.ConditionUnknown, ReasonRolloutProgressing,
			"following Rollout "+ref.Name+" for this revision")
	}
}

// markRolledOut writes the RolledOut condition of a verdict.
func markRolledOut(s *v1alpha1.GitRepositoryStatus, generation int64, v rolloutVerdict) {
	status := metav1.ConditionFalse
	if v.reason == ReasonRolledOut {
		status = metav1.ConditionTrue
	}
	condition(s, generation, v1alpha1.ConditionRolledOut, status, v.reason, withFix(v.reason, v.message))
}
