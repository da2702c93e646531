package controller

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/apply"
)

// TestRolloutVerdicts: KULTA's phases and decisions, and Argo's phases read
// as KULTA's, make the RolledOut condition's reasons.
func TestRolloutVerdicts(t *testing.T) {
	kulta := healthTarget{gvk: schema.GroupVersionKind{Group: "kulta.io", Version: "v1alpha1", Kind: "Rollout"}, name: "web", rollout: true}
	argo := healthTarget{gvk: schema.GroupVersionKind{Group: "argoproj.io", Version: "v1alpha1", Kind: "Rollout"}, name: "web", rollout: true}
	for _, c := range []struct {
		name   string
		target healthTarget
		status map[string]any
		gen    int64
		reason string // "" while progressing
		failed bool
	}{
		{"progressing", kulta, map[string]any{"phase": "Progressing", "currentStepIndex": int64(1), "currentWeight": int64(20)}, 1, "", false},
		{"completed", kulta, map[string]any{"phase": "Completed"}, 1, ReasonRolledOut, false},
		{"completed, an older spec", kulta, map[string]any{"phase": "Completed", "observedGeneration": int64(1)}, 2, "", false},
		{"failed", kulta, map[string]any{"phase": "Failed", "message": "analysis failed"}, 1, ReasonRolloutFailed, true},
		{"rolled back", kulta, map[string]any{"phase": "Failed", "decisions": []any{
			map[string]any{"action": "Promotion"}, map[string]any{"action": "Rollback", "reason": "error rate"}}}, 1, ReasonRolledBack, true},
		{"an old rollback, completed since", kulta, map[string]any{"phase": "Completed", "decisions": []any{
			map[string]any{"action": "Rollback"}}}, 1, ReasonRolledOut, false},
		{"argo healthy", argo, map[string]any{"phase": "Healthy"}, 1, ReasonRolledOut, false},
		{"argo degraded", argo, map[string]any{"phase": "Degraded"}, 1, ReasonRolloutFailed, true},
		{"argo paused", argo, map[string]any{"phase": "Paused"}, 1, "", false},
	} {
		u := &unstructured.Unstructured{Object: map[string]any{"status": c.status}}
		u.SetGeneration(c.gen)
		w := &healthWatch{}
		why := w.judgeRollout(c.target, u)
		if w.verdict.reason != c.reason || w.verdict.failed() != c.failed || (why == "") != (c.reason == ReasonRolledOut) {
			t.Errorf("%s: verdict %+v (%q), want reason %q", c.name, w.verdict, why, c.reason)
		}
	}
	// KULTA's status says no observedGeneration: what it said as this sync
	// wrote the new revision is the last revision's, however often KULTA
	// writes it again (a resync, the stable pods' counts).
	rollout := func(phase, message string, ready int64) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"phase": phase, "message": message,
			"currentStepIndex": int64(3), "readyReplicas": ready}}}
	}
	changed := kulta
	before := readRollout("kulta.io", rollout("Completed", "done", 3))
	changed.before = &before
	w := &healthWatch{}
	if w.judgeRollout(changed, rollout("Completed", "done", 3)); w.verdict.reason != "" {
		t.Errorf("the last revision's Completed: %+v", w.verdict)
	}
	if w.judgeRollout(changed, rollout("Completed", "done", 2)); w.verdict.reason != "" {
		t.Errorf("the last revision's Completed, its pods' count rewritten: %+v", w.verdict)
	}
	if w.judgeRollout(changed, rollout("Failed", "analysis failed", 3)); w.verdict.reason != ReasonRolloutFailed {
		t.Errorf("Failed after the change: %+v", w.verdict)
	}
	w = &healthWatch{}
	w.judgeRollout(changed, rollout("Progressing", "canary at 20%", 3))
	if w.judgeRollout(changed, rollout("Completed", "done", 3)); w.verdict.reason != ReasonRolledOut {
		t.Errorf("Progressing, then Completed as last time: %+v", w.verdict)
	}
	w = &healthWatch{}
	w.judgeRollout(kulta, &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"phase": "Paused"}}})
	if got := w.verdict.outcome(0); got.reason != ReasonRolloutPaused {
		t.Errorf("paused past the timeout: %+v", got)
	}
	if s := w.rollout; s == nil || s.Phase != "Paused" {
		t.Errorf("the status does not show the phase: %+v", s)
	}
}

// TestARolloutThatCannotBeReadOrTakesTooLong: a Rollout not found (or whose
// CRD is missing) reads RolloutNotFound; one still progressing when the
// wait runs out, RolloutTimeout.
func TestARolloutThatCannotBeReadOrTakesTooLong(t *testing.T) {
	kulta := healthTarget{gvk: schema.GroupVersionKind{Group: "kulta.io", Version: "v1alpha1", Kind: "Rollout"}, namespace: "team",
		name: "web", byName: true, rollout: true}
	scope := watchScope{resource: schema.GroupVersionResource{Group: "kulta.io", Version: "v1alpha1", Resource: "rollouts"}, namespace: "team", name: "web"}
	w := &healthWatch{scopeOf: map[healthTarget]watchScope{kulta: scope}, keyOf: map[healthTarget]string{kulta: "team/web"},
		stores: map[watchScope]cache.Store{scope: cache.NewStore(cache.MetaNamespaceKeyFunc)}, errors: map[watchScope]string{}}
	unhealthy := w.unhealthy([]healthTarget{kulta})
	if len(unhealthy) != 1 || w.verdict.reason != ReasonRolloutNotFound || w.rollout == nil {
		t.Errorf("a missing Rollout: %v %+v", unhealthy, w.verdict)
	}
	w = &healthWatch{}
	w.judgeRollout(kulta, &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"phase": "Progressing"}}})
	if got := w.verdict.outcome(time.Minute); got.reason != ReasonRolloutTimeout {
		t.Errorf("still progressing past the timeout: %+v", got)
	}
}

// TestAWaitLostToARestartDoesNotSayRolledOutTooEarly: after a restart the
// wait is rebuilt from status; while RolledOut said the Rollout had not
// picked the revision up, the Completed status.rollout shows is the last
// revision's, and only a status that says something else counts.
func TestAWaitLostToARestartDoesNotSayRolledOutTooEarly(t *testing.T) {
	kulta := healthTarget{gvk: schema.GroupVersionKind{Group: "kulta.io", Version: "v1alpha1", Kind: "Rollout"}, name: "web", rollout: true}
	repo := &v1alpha1.GitRepository{Spec: v1alpha1.GitRepositorySpec{RolloutRef: &v1alpha1.RolloutReference{Name: "web"}}}
	repo.Status.Rollout = &v1alpha1.RolloutStatus{Phase: "Completed", Message: "done"}
	completed := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"phase": "Completed", "message": "done"}}}
	for _, message := range []string{"following Rollout web for this revision", "Rollout web: " + notPickedUp + "; it shows Completed"} {
		repo.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionRolledOut, Status: metav1.ConditionUnknown, Message: message}}
		target := kulta
		target.before = unpickedUp(&repo.Status)
		w := &healthWatch{}
		if w.judgeRollout(target, completed); w.verdict.reason != "" {
			t.Errorf("after %q, the last revision's Completed counts: %+v", message, w.verdict)
		}
		moved := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"phase": "Completed", "message": "web:2 at 100%"}}}
		if w.judgeRollout(target, moved); w.verdict.reason != ReasonRolledOut {
			t.Errorf("after %q, a Completed of the new revision: %+v", message, w.verdict)
		}
	}
	// Once the Rollout was seen to pick the revision up, its status counts.
	repo.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionRolledOut, Status: metav1.ConditionUnknown,
		Message: "Rollout web: Progressing, step 1"}}
	if b := unpickedUp(&repo.Status); b != nil {
		t.Errorf("a wait that saw the revision picked up: before %+v", b)
	}
}

// TestARolloutFromGitIsFollowedOnce: with wait, the Rollout that git holds
// and spec.rolloutRef names is judged once, by its phase: kstatus cannot
// read an Argo Rollout (its observedGeneration is a string).
func TestARolloutFromGitIsFollowedOnce(t *testing.T) {
	repo := &v1alpha1.GitRepository{Spec: v1alpha1.GitRepositorySpec{Wait: true, TargetNamespace: "team",
		RolloutRef: &v1alpha1.RolloutReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "web"}}}
	applied := []apply.Entry{
		{Group: "argoproj.io", Version: "v1alpha1", Kind: "Rollout", Namespace: "team", Name: "web"},
		{Version: "v1", Kind: "ConfigMap", Namespace: "team", Name: "settings"},
	}
	targets := followedTargets(repo, applied, nil)
	if len(targets) != 2 {
		t.Fatalf("targets %v, want the ConfigMap and the Rollout once", targets)
	}
	for _, target := range targets {
		if target.gvk.Kind == "Rollout" && !target.rollout {
			t.Errorf("the Rollout is judged by kstatus: %+v", target)
		}
	}
}

// TestOnlyTheRolloutRefIsAskedForWhole: the apply is asked to answer the
// rolloutRef's write whole (its status is what the rollout wait compares
// with), every other write as metadata alone unless an earlier hook asked
// for it whole.
func TestOnlyTheRolloutRefIsAskedForWhole(t *testing.T) {
	opts := apply.Options{ObserveWhole: func(e apply.Entry) bool { return e.Name == "asked-before" }}
	kultaRollout(t).hookInto(&opts, "team")
	for _, e := range []apply.Entry{
		{Group: "kulta.io", Kind: "Rollout", Namespace: "other", Name: "web"},
		{Group: "argoproj.io", Kind: "Rollout", Namespace: "team", Name: "web"},
		{Group: "apps", Kind: "Deployment", Namespace: "team", Name: "web"},
		{Group: "kulta.io", Kind: "Rollout", Namespace: "team", Name: "api"},
	} {
		if opts.ObserveWhole(e) {
			t.Errorf("%+v is asked for whole; only the rolloutRef is", e)
		}
	}
	if !opts.ObserveWhole(theRollout) {
		t.Error("the rolloutRef is answered as metadata alone: its status could not be read")
	}
	if !opts.ObserveWhole(apply.Entry{Kind: "ConfigMap", Namespace: "team", Name: "asked-before"}) {
		t.Error("what an earlier hook asked for whole is no longer asked whole")
	}
}

// TestTheRolloutsStatusIsReadFromItsAnswer: the Rollout's whole answer
// gives its status as the write left it, and every answer still reaches the
// Observe set before (drift detection's).
func TestTheRolloutsStatusIsReadFromItsAnswer(t *testing.T) {
	writes := kultaRollout(t)
	var passed []string
	opts := apply.Options{Observe: func(e apply.Entry, _ metav1.Object) { passed = append(passed, e.Name) }}
	writes.hookInto(&opts, "team")
	opts.Observe(theRollout, &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"phase": "Progressing"}}})
	opts.Observe(apply.Entry{Kind: "ConfigMap", Namespace: "team", Name: "settings"}, &metav1.PartialObjectMetadata{})
	before := writes.before(&apply.Result{Changes: []apply.Change{{Entry: theRollout, Written: true}}}, "team")
	if before == nil || before.Phase != "Progressing" {
		t.Errorf("the Rollout as its write left it: %+v, want phase Progressing", before)
	}
	if writes.before(&apply.Result{Changes: []apply.Change{{Entry: theRollout, Written: true, OwnershipOnly: true}}}, "team") != nil {
		t.Error("a write that only took fields back counts as a new revision for KULTA to pick up")
	}
	if len(passed) != 2 || passed[0] != "web" || passed[1] != "settings" {
		t.Errorf("the Observe set before saw %v, want both answers", passed)
	}
}

// theRollout is the entry of kultaRollout's rolloutRef in namespace team.
var theRollout = apply.Entry{Group: "kulta.io", Kind: "Rollout", Namespace: "team", Name: "web"}

func kultaRollout(t *testing.T) *rolloutWrites {
	t.Helper()
	return newRolloutWrites(&v1alpha1.GitRepository{Spec: v1alpha1.GitRepositorySpec{
		RolloutRef: &v1alpha1.RolloutReference{APIVersion: "kulta.io/v1alpha1", Kind: "Rollout", Name: "web"}}})
}
