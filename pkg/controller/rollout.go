package controller

import (
	"context"
	"crypto/sha256"
	"encoding/json"
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
	if !w.rolloutPickedUp && t.baseline.rewritten(u, seen) {
		w.rolloutPickedUp = true
	}
	return w.rolloutPickedUp
}

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

// rolloutBaseline is spec.rolloutRef's Rollout as a sync's write left it:
// when its status was last written (the apiserver's clock, in whole
// seconds) and a fingerprint of that status. KULTA's status says no
// observedGeneration, so only a status written since tells a phase of the
// new revision from the last one's; a write within the same second shows
// in the fingerprint.
type rolloutBaseline struct {
	statusWritten time.Time
	status        [sha256.Size]byte
	// shown, when set, replaces the two: after a restart only the
	// GitRepository's status.rollout tells what the Rollout said while it
	// had not picked the revision up.
	shown *v1alpha1.RolloutStatus
}

func baselineOf(u *unstructured.Unstructured) *rolloutBaseline {
	return &rolloutBaseline{statusWritten: lastStatusWrite(u), status: statusFingerprint(u)}
}

// rewritten: the Rollout's status was written since the baseline. A nil
// baseline (the sync did not change the Rollout) asks nothing, nor does a
// status that says which generation it observed (observedCurrentGeneration
// judges that).
func (b *rolloutBaseline) rewritten(u *unstructured.Unstructured, seen v1alpha1.RolloutStatus) bool {
	if b == nil {
		return true
	}
	if _, found, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "observedGeneration"); found {
		return true
	}
	if s := b.shown; s != nil {
		return !sameRolloutStatus(*s, seen)
	}
	return lastStatusWrite(u).After(b.statusWritten) || statusFingerprint(u) != b.status
}

// lostBaseline is the baseline of a wait that a restart (or a new leader)
// lost while the Rollout had not picked the revision up, or nil: the
// Rollout must say something else than status.rollout shows before its
// phase counts. Telling a later status that happens to equal it from the
// old one is beyond reach; that errs towards RolloutTimeout, never towards
// a RolledOut too early.
func lostBaseline(repo *v1alpha1.GitRepository) *rolloutBaseline {
	rolled := apimeta.FindStatusCondition(repo.Status.Conditions, v1alpha1.ConditionRolledOut)
	if repo.Status.Rollout == nil || rolled == nil || rolled.Status == metav1.ConditionTrue ||
		!strings.Contains(rolled.Message, notPickedUp) && !strings.HasPrefix(rolled.Message, followingRollout) {
		return nil
	}
	return &rolloutBaseline{shown: repo.Status.Rollout}
}

func lastStatusWrite(u *unstructured.Unstructured) time.Time {
	var last time.Time
	for _, m := range u.GetManagedFields() {
		if m.Subresource == "status" && m.Time != nil && m.Time.After(last) {
			last = m.Time.Time
		}
	}
	return last
}

// statusFingerprint hashes the status as JSON (map keys sorted).
func statusFingerprint(u *unstructured.Unstructured) [sha256.Size]byte {
	status, _, _ := unstructured.NestedFieldNoCopy(u.Object, "status")
	data, _ := json.Marshal(status)
	return sha256.Sum256(data)
}

// rolloutWrites catches, through the apply's Observe hook, the Rollout of
// spec.rolloutRef as the apply left it.
type rolloutWrites struct {
	ref   *v1alpha1.RolloutReference
	group string
	seen  atomic.Pointer[rolloutBaseline]
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

// observing chains onto next (which may be nil) the catch of the Rollout.
func (w *rolloutWrites) observing(namespace string, next func(apply.Entry, *unstructured.Unstructured)) func(apply.Entry, *unstructured.Unstructured) {
	if w == nil {
		return next
	}
	return func(e apply.Entry, obj *unstructured.Unstructured) {
		if w.is(e, namespace) {
			w.seen.Store(baselineOf(obj))
		}
		if next != nil {
			next(e, obj)
		}
	}
}

// baseline is the Rollout as this sync's write left it, or nil if the sync
// did not write it (its new revision is KULTA's to pick up only if it did).
func (w *rolloutWrites) baseline(result *apply.Result, namespace string) *rolloutBaseline {
	if w == nil || result == nil {
		return nil
	}
	for _, c := range result.Changes {
		if c.Written && w.is(c.Entry, namespace) {
			if b := w.seen.Load(); b != nil {
				return b
			}
			return &rolloutBaseline{} // written, not read back: any status is newer
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
		// (lostBaseline).
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
			followingRollout+ref.Name+" for this revision")
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
