package controller

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
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

// The RolledOut condition's messages that say the Rollout's status may
// still be the last revision's.
const (
	notPickedUp      = "the Rollout has not picked the new revision up yet"
	followingRollout = "following Rollout "
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

// pickedUp: the Rollout's status speaks of the revision this sync wrote.
// Once it did, it keeps doing so for this wait, even if the status comes
// back to what it said before (Progressing, then Completed as last time).
func (w *healthWatch) pickedUp(t healthTarget, u *unstructured.Unstructured, seen v1alpha1.RolloutStatus) bool {
	if !w.rolloutPickedUp && movedOn(t.before, u, seen) {
		w.rolloutPickedUp = true
	}
	return w.rolloutPickedUp
}

// rolloutMissing records that the Rollout cannot be read, and says so as
// an unhealthy target.
func (w *healthWatch) rolloutMissing(t healthTarget, why string) string {
	message := fmt.Sprintf("%s: %s", t, why)
	w.verdict = rolloutVerdict{reason: ReasonRolloutNotFound, message: message}
	w.rollout = &v1alpha1.RolloutStatus{Message: brief(message), ObservedAt: metav1.Now()}
	return message
}

// judgeRollout reads a KULTA (or Argo) Rollout: its phase, step, weight and
// message into w.rollout, and whether it completed for this revision,
// failed or rolled back into w.verdict. It says why it is not done yet, or "".
func (w *healthWatch) judgeRollout(t healthTarget, u *unstructured.Unstructured) string {
	seen := readRollout(t.gvk.Group, u)
	phase, message := seen.Phase, seen.Message
	if w.rollout != nil && sameRolloutStatus(*w.rollout, seen) {
		seen.ObservedAt = w.rollout.ObservedAt // unchanged: no new status write
	}
	w.rollout = &seen
	w.verdict = rolloutVerdict{phase: phase, message: message}
	switch {
	case !observedCurrentGeneration(u) || !w.pickedUp(t, u, seen):
		w.verdict.message = notPickedUp
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

// readRollout is what status.rollout shows of a KULTA (or Argo) Rollout:
// its phase (Argo's read as KULTA's), step, weight and message, bounded
// because whoever may write the Rollout's status writes them.
func readRollout(group string, u *unstructured.Unstructured) v1alpha1.RolloutStatus {
	phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
	if group == "argoproj.io" {
		phase = argoPhases[phase]
	}
	message, _, _ := unstructured.NestedString(u.Object, "status", "message")
	return v1alpha1.RolloutStatus{Phase: shorten(phase, 64, "…"), Message: brief(message), ObservedAt: metav1.Now(),
		Step: nestedInt32(u, "status", "currentStepIndex"), Weight: nestedInt32(u, "status", "currentWeight")}
}

// movedOn: the Rollout's status, as read, no longer says what it said
// before this sync wrote the new revision (nil: the sync did not write it,
// so nothing is asked). KULTA's status says no observedGeneration, so only
// a change tells a phase of the new revision from the last one's: a status
// write that says the same (a resync, the stable pods' counts) does not
// count. A status that says which generation it observed is judged by
// that (observedCurrentGeneration).
func movedOn(before *v1alpha1.RolloutStatus, u *unstructured.Unstructured, seen v1alpha1.RolloutStatus) bool {
	if before == nil {
		return true
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "observedGeneration"); found {
		return true
	}
	return !sameRolloutStatus(*before, seen)
}

// unpickedUp is what the Rollout said as a sync's write left it
// (status.rollout, from the write's answer), while status says the Rollout
// has not picked that revision up; otherwise nil. A wait that a restart (or
// a new leader) lost, and a sync that did not write the Rollout, follow the
// revision from there.
func unpickedUp(s *v1alpha1.GitRepositoryStatus) *v1alpha1.RolloutStatus {
	rolled := apimeta.FindStatusCondition(s.Conditions, v1alpha1.ConditionRolledOut)
	if s.Rollout == nil || s.Rollout.Phase == "" || rolled == nil || rolled.Status == metav1.ConditionTrue ||
		!strings.Contains(rolled.Message, notPickedUp) && !strings.HasPrefix(rolled.Message, followingRollout) {
		return nil
	}
	return s.Rollout
}

// rolloutWrites catches, through the apply's Observe hook, the Rollout of
// spec.rolloutRef as the apply left it.
type rolloutWrites struct {
	ref   *v1alpha1.RolloutReference
	group string
	seen  atomic.Pointer[v1alpha1.RolloutStatus]
}

func newRolloutWrites(repo *v1alpha1.GitRepository) *rolloutWrites {
	ref := repo.Spec.RolloutRef
	if ref == nil {
		return nil
	}
	gv, _ := schema.ParseGroupVersion(ref.APIVersion)
	return &rolloutWrites{ref: ref, group: gv.Group}
}

func (w *rolloutWrites) is(e apply.Entry, namespace string) bool {
	return e.Group == w.group && e.Kind == w.ref.Kind && e.Name == w.ref.Name && e.Namespace == namespace
}

// hookInto makes the apply answer the rolloutRef's write whole and records
// the Rollout's status from that answer, passing every answer on to the
// Observe already set. opts.Observe, opts.ObserveWhole and w may each be
// nil.
func (w *rolloutWrites) hookInto(opts *apply.Options, namespace string) {
	if w == nil {
		return
	}
	next, nextWhole := opts.Observe, opts.ObserveWhole
	opts.ObserveWhole = func(e apply.Entry) bool { return w.is(e, namespace) || nextWhole != nil && nextWhole(e) }
	opts.Observe = func(e apply.Entry, obj metav1.Object) {
		if whole, ok := obj.(*unstructured.Unstructured); ok && w.is(e, namespace) {
			seen := readRollout(w.group, whole)
			w.seen.Store(&seen)
		}
		if next != nil {
			next(e, obj)
		}
	}
}

// before is what the Rollout said as this sync's write left it, or nil if
// the sync did not write it (its new revision is KULTA's to pick up only
// if it did; a write that only took fields back changed no value).
func (w *rolloutWrites) before(result *apply.Result, namespace string) *v1alpha1.RolloutStatus {
	if w == nil || result == nil {
		return nil
	}
	for _, c := range result.Changes {
		if c.Written && !c.OwnershipOnly && w.is(c.Entry, namespace) {
			if seen := w.seen.Load(); seen != nil {
				return seen
			}
			return &v1alpha1.RolloutStatus{} // written, not read back: any status is newer
		}
	}
	return nil
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

// sameRolloutStatus: a and b show the same phase, step, weight and message.
func sameRolloutStatus(a, b v1alpha1.RolloutStatus) bool {
	return a.Phase == b.Phase && a.Message == b.Message && equalInt32(a.Step, b.Step) && equalInt32(a.Weight, b.Weight)
}

func equalInt32(a, b *int32) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

// reportRollout shows, while the wait runs, what the Rollout is doing.
func (r *Reconciler) reportRollout(ctx context.Context, repo *v1alpha1.GitRepository, commit string, current func() bool,
	seen v1alpha1.RolloutStatus, pickedUp bool) {
	message := fmt.Sprintf("Rollout %s: %s", repo.Spec.RolloutRef.Name, rolloutSummary(seen))
	if !pickedUp {
		// Said in status, so that a wait lost to a restart knows it too
		// (unpickedUp).
		message = fmt.Sprintf("Rollout %s: %s; it shows %s", repo.Spec.RolloutRef.Name, notPickedUp, rolloutSummary(seen))
	}
	ctx, cancel := context.WithTimeout(ctx, statusWriteTimeout)
	defer cancel()
	err := r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		if !current() || s.LastSyncedCommit != commit || s.ObservedGeneration != generation {
			return
		}
		s.Rollout = &seen
		condition(s, generation, v1alpha1.ConditionRolledOut, metav1.ConditionUnknown, ReasonRolloutProgressing, message)
	})
	if err != nil {
		klog.FromContext(withCommit(ctx, commit)).Error(err, "Writing status")
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

// followRolloutAnew, after a sync applied, starts following
// spec.rolloutRef's Rollout for the new revision; status.rollout shows
// what the Rollout said as the sync wrote it (before; nil if the sync did
// not write it). Without a rolloutRef, RolledOut and status.rollout are
// dropped.
func followRolloutAnew(s *v1alpha1.GitRepositoryStatus, generation int64, ref *v1alpha1.RolloutReference,
	before *v1alpha1.RolloutStatus) {
	if ref == nil {
		apimeta.RemoveStatusCondition(&s.Conditions, v1alpha1.ConditionRolledOut)
		s.Rollout = nil
		return
	}
	if before != nil {
		s.Rollout = before
	}
	condition(s, generation, v1alpha1.ConditionRolledOut, metav1.ConditionUnknown, ReasonRolloutProgressing,
		followingRollout+ref.Name+" for this revision")
}

// markRolledOut writes the RolledOut condition of a verdict.
func markRolledOut(s *v1alpha1.GitRepositoryStatus, generation int64, v rolloutVerdict) {
	status := metav1.ConditionFalse
	if v.reason == ReasonRolledOut {
		status = metav1.ConditionTrue
	}
	condition(s, generation, v1alpha1.ConditionRolledOut, status, v.reason, withFix(v.reason, v.message, maxMessageBytes))
}
