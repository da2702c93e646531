package controller

import (
	"testing"
	"time"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/apply"
	"github.com/falsesystems/alumiini/pkg/manifest"
)

// TestFightsBackOff: a writer that keeps changing an object back gets two
// quick corrections, then ever longer waits, and the status names it.
func TestFightsBackOff(t *testing.T) {
	book := newDriftBook(nil, nil)
	now := time.Unix(1_700_000_000, 0)
	change := apply.Change{Entry: apply.Entry{Version: "v1", Kind: "ConfigMap", Namespace: "ns", Name: "cm"},
		Action: apply.Configured, Manager: "stubborn"}
	var corrected []time.Duration
	start := now
	for step := 0; step < 400; step++ { // the other writer changes it back every 100ms for 40s
		s := &driftSync{book: book, key: "ns/repo", target: "ns", mode: v1alpha1.DriftCorrect, now: now}
		if s.decide(change) {
			corrected = append(corrected, now.Sub(start))
		}
		now = now.Add(100 * time.Millisecond)
	}
	want := []time.Duration{0, 100 * time.Millisecond, 2100 * time.Millisecond, 6100 * time.Millisecond, 14100 * time.Millisecond, 30100 * time.Millisecond}
	if len(corrected) != len(want) {
		t.Fatalf("corrections at %v, want %v", corrected, want)
	}
	for i := range want {
		if corrected[i] != want[i] {
			t.Fatalf("corrections at %v, want %v", corrected, want)
		}
	}
	st := book.status("ns/repo")
	if st.Drifted != 1 || st.Objects[0].State != v1alpha1.DriftStateBackingOff || st.Objects[0].Manager != "stubborn" {
		t.Errorf("status: %+v", st.Objects)
	}
}

// TestGraceAndDetectHoldBackOnlyDrift: with a grace period or in Detect, a
// drifted object is not written, but a commit that changes it is.
func TestGraceAndDetectHoldBackOnlyDrift(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	change := apply.Change{Entry: apply.Entry{Version: "v1", Kind: "ConfigMap", Namespace: "ns", Name: "cm"}, Action: apply.Configured}
	for _, tc := range []struct {
		name  string
		mode  v1alpha1.DriftMode
		grace time.Duration
	}{{"detect", v1alpha1.DriftDetect, 0}, {"grace", v1alpha1.DriftCorrect, time.Minute}} {
		book := newDriftBook(nil, nil)
		drift := &driftSync{book: book, key: "ns/r", target: "ns", mode: tc.mode, grace: tc.grace, now: now}
		if drift.decide(change) {
			t.Errorf("%s: drift was written", tc.name)
		}
		unchangedInGit := &driftSync{book: book, key: "ns/r", target: "ns", mode: tc.mode, grace: tc.grace, now: now,
			gitChanged: true, changed: func(manifest.ID) bool { return false }}
		if unchangedInGit.decide(change) {
			t.Errorf("%s: a commit that does not touch the object wrote over its drift", tc.name)
		}
		changedInGit := &driftSync{book: book, key: "ns/r", target: "ns", mode: tc.mode, grace: tc.grace, now: now,
			gitChanged: true, changed: func(manifest.ID) bool { return true }}
		if !changedInGit.decide(change) {
			t.Errorf("%s: a commit that changes the object did not win", tc.name)
		}
	}
	book := newDriftBook(nil, nil)
	late := &driftSync{book: book, key: "ns/r", target: "ns", mode: v1alpha1.DriftCorrect, grace: time.Minute, now: now}
	late.decide(change)
	late.now = now.Add(time.Minute)
	if !late.decide(change) {
		t.Error("not corrected once the grace period passed")
	}
}
