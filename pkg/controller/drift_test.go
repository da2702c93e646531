package controller

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/apply"
	"github.com/falsesystems/alumiini/pkg/drift"
	"github.com/falsesystems/alumiini/pkg/manifest"
)

var settingsEntry = apply.Entry{Version: "v1", Kind: "ConfigMap", Namespace: "ns", Name: "settings"}

// syncWith runs one sync's drift policy over changes, as the reconciler
// does around an apply that succeeds, and returns what was written.
func syncWith(s *driftSync, inventory []apply.Entry, changes ...apply.Change) []apply.Change {
	var written []apply.Change
	result := &apply.Result{Inventory: inventory}
	for _, c := range changes {
		c.Written = s.decide(c)
		if c.Written {
			written = append(written, c)
		}
		result.Changes = append(result.Changes, c)
	}
	s.settle(result, nil, inventory)
	return written
}

func driftOnly(book *driftBook, mode v1alpha1.DriftMode, grace time.Duration, now time.Time) *driftSync {
	return &driftSync{book: book, key: "ns/r", target: "ns", mode: mode, grace: grace, now: now,
		examined: map[manifest.ID]bool{keyOfEntry(settingsEntry, "ns"): true}}
}

// TestFightsBackOff: a writer that keeps changing an object back gets two
// quick corrections, then ever longer waits, and the status names it.
func TestFightsBackOff(t *testing.T) {
	book := newDriftBook(nil, nil)
	now := time.Unix(1_700_000_000, 0)
	change := apply.Change{Entry: settingsEntry, Action: apply.Configured, Manager: "stubborn"}
	var corrected []time.Duration
	start := now
	for range 400 { // the other writer changes it back every 100ms for 40s
		if len(syncWith(driftOnly(book, v1alpha1.DriftCorrect, 0, now), []apply.Entry{settingsEntry}, change)) > 0 {
			corrected = append(corrected, now.Sub(start))
		}
		now = now.Add(100 * time.Millisecond)
	}
	want := []time.Duration{0, 100 * time.Millisecond, 2100 * time.Millisecond, 6100 * time.Millisecond, 14100 * time.Millisecond, 30100 * time.Millisecond}
	if fmt.Sprint(corrected) != fmt.Sprint(want) {
		t.Fatalf("corrections at %v, want %v", corrected, want)
	}
	st := book.status("ns/r")
	if st.Drifted != 1 || st.Objects[0].State != v1alpha1.DriftStateBackingOff || st.Objects[0].Manager != "stubborn" {
		t.Errorf("status: %+v", st.Objects)
	}
}

// TestGraceAndDetectHoldBackOnlyDrift: with a grace period or in Detect, a
// drifted object is not written, but a commit that changes it is.
func TestGraceAndDetectHoldBackOnlyDrift(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	change := apply.Change{Entry: settingsEntry, Action: apply.Configured}
	inventory := []apply.Entry{settingsEntry}
	for _, tc := range []struct {
		name  string
		mode  v1alpha1.DriftMode
		grace time.Duration
	}{{"detect", v1alpha1.DriftDetect, 0}, {"grace", v1alpha1.DriftCorrect, time.Minute}} {
		book := newDriftBook(nil, nil)
		if len(syncWith(driftOnly(book, tc.mode, tc.grace, now), inventory, change)) != 0 {
			t.Errorf("%s: drift was written", tc.name)
		}
		unchanged := &driftSync{book: book, key: "ns/r", target: "ns", mode: tc.mode, grace: tc.grace, now: now,
			fullSync: true, changedInGit: func(manifest.ID) bool { return false }}
		if len(syncWith(unchanged, inventory, change)) != 0 {
			t.Errorf("%s: a commit that does not touch the object wrote over its drift", tc.name)
		}
		changed := &driftSync{book: book, key: "ns/r", target: "ns", mode: tc.mode, grace: tc.grace, now: now,
			fullSync: true, changedInGit: func(manifest.ID) bool { return true }}
		if len(syncWith(changed, inventory, change)) != 1 {
			t.Errorf("%s: a commit that changes the object did not win", tc.name)
		}
		if o := book.status("ns/r").Objects[0]; o.State != v1alpha1.DriftStateCorrected {
			t.Errorf("%s: after git won: %+v", tc.name, o)
		}
	}
	book := newDriftBook(nil, nil)
	syncWith(driftOnly(book, v1alpha1.DriftCorrect, time.Minute, now), inventory, change)
	if len(syncWith(driftOnly(book, v1alpha1.DriftCorrect, time.Minute, now.Add(time.Minute)), inventory, change)) != 1 {
		t.Error("not corrected once the grace period passed")
	}
}

// TestChangedInGitAfterARestart: with nothing recorded, the commit applied
// before (rendered again) tells git's changes from drift.
func TestChangedInGitAfterARestart(t *testing.T) {
	cm := func(name, value string) manifest.Object {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": name}, "data": map[string]any{"v": value}}}
		return manifest.Object{Unstructured: u}
	}
	book := newDriftBook(nil, nil)
	changed := book.changedSince("ns/r", "ns", []manifest.Object{cm("a", "1"), cm("b", "2")}, []manifest.Object{cm("a", "1"), cm("b", "1")})
	if changed(manifest.ID{Kind: "ConfigMap", Namespace: "ns", Name: "a"}) || !changed(manifest.ID{Kind: "ConfigMap", Namespace: "ns", Name: "b"}) {
		t.Error("the previous commit's render does not tell what git changed")
	}
	if newDriftBook(nil, nil).changedSince("ns/r", "ns", []manifest.Object{cm("a", "1")}, nil) != nil {
		t.Error("with nothing to compare with, git must win")
	}
	// The previous commit's hashes are kept: a retry does not need them again.
	if changed := book.changedSince("ns/r", "ns", []manifest.Object{cm("a", "1"), cm("b", "2")}, nil); changed == nil ||
		!changed(manifest.ID{Kind: "ConfigMap", Namespace: "ns", Name: "b"}) {
		t.Error("the previous commit's hashes were not kept")
	}
}

// TestIgnoreRecordsNothing: Ignore writes what a sync finds and keeps no
// drift state, so nothing is held back or reported.
func TestIgnoreRecordsNothing(t *testing.T) {
	book := newDriftBook(nil, nil)
	s := driftOnly(book, v1alpha1.DriftIgnore, time.Hour, time.Unix(1_700_000_000, 0))
	if len(syncWith(s, []apply.Entry{settingsEntry}, apply.Change{Entry: settingsEntry, Action: apply.Configured})) != 1 {
		t.Error("Ignore held a change back")
	}
	if book.status("ns/r") != nil {
		t.Errorf("Ignore reported drift: %+v", book.status("ns/r"))
	}
}

// TestDriftOfAnObjectThatLeftGitIsForgotten: an object that leaves the
// inventory takes its drift, fights and baselines with it (a pusher who
// renames every object each commit must not grow the shared process), and
// a held-back one is no longer due.
func TestDriftOfAnObjectThatLeftGitIsForgotten(t *testing.T) {
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, meta.RESTScopeNamespace)
	book := newDriftBook(nil, mapper)
	now := time.Unix(1_700_000_000, 0)
	syncWith(driftOnly(book, v1alpha1.DriftCorrect, time.Minute, now), []apply.Entry{settingsEntry},
		apply.Change{Entry: settingsEntry, Action: apply.Configured})
	if book.status("ns/r").Drifted != 1 {
		t.Fatal("no drift recorded")
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for c := range 20 {
		observe := book.observe("ns/r", "ns")
		var inventory []apply.Entry
		for i := range 1000 {
			e := apply.Entry{Version: "v1", Kind: "ConfigMap", Namespace: "ns", Name: fmt.Sprintf("commit-%02d-%04d", c, i)}
			u := &unstructured.Unstructured{}
			u.SetAPIVersion("v1")
			u.SetKind("ConfigMap")
			u.SetNamespace("ns")
			u.SetName(e.Name)
			observe(e, u)
			inventory = append(inventory, e)
		}
		syncWith(&driftSync{book: book, key: "ns/r", target: "ns", mode: v1alpha1.DriftCorrect, now: now, fullSync: true}, inventory)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	d := book.repos["ns/r"]
	if len(d.baseline) != 1000 || len(d.keys) != 1000 || len(book.owners) != 1000 || len(d.drifted) != 0 || len(d.fights) != 0 {
		t.Errorf("after 20 commits of 1,000 renamed objects the book keeps %d baselines, %d keys, %d owners, %d drifted, %d fights",
			len(d.baseline), len(d.keys), len(book.owners), len(d.drifted), len(d.fights))
	}
	if !book.next("ns/r").IsZero() {
		t.Error("an object that left git is still due")
	}
	t.Logf("heap grew %d KiB", (int64(after.HeapAlloc)-int64(before.HeapAlloc))>>10)
}

// TestHeldObjectsStayListedAndCorrectionsAreToldOnce: a sync of other
// suspects keeps a held object listed; a correction is told by the sync
// that made it only; a failed apply corrects nothing.
func TestHeldObjectsStayListedAndCorrectionsAreToldOnce(t *testing.T) {
	book := newDriftBook(nil, nil)
	now := time.Unix(1_700_000_000, 0)
	other := apply.Entry{Version: "v1", Kind: "ConfigMap", Namespace: "ns", Name: "other"}
	inventory := []apply.Entry{settingsEntry, other}
	full := &driftSync{book: book, key: "ns/r", target: "ns", mode: v1alpha1.DriftCorrect, now: now, fullSync: true}
	full.settle(&apply.Result{Held: []apply.Entry{settingsEntry}, Inventory: inventory}, nil, inventory)

	s := &driftSync{book: book, key: "ns/r", target: "ns", mode: v1alpha1.DriftCorrect, now: now.Add(time.Second),
		examined: map[manifest.ID]bool{keyOfEntry(other, "ns"): true}}
	syncWith(s, inventory, apply.Change{Entry: other, Action: apply.Created})
	st := book.status("ns/r")
	if st.Held != 1 || len(st.Objects) != 2 {
		t.Fatalf("after a sync of another suspect: %+v", st)
	}
	if events := book.events("ns/r", now.Add(time.Second)); len(events[ReasonDriftCorrected]) != 1 {
		t.Errorf("the correcting sync told %v", events)
	}
	if events := book.events("ns/r", now.Add(time.Minute)); len(events[ReasonDriftCorrected]) != 0 {
		t.Errorf("a later sync told the correction again: %v", events)
	}

	failing := &driftSync{book: book, key: "ns/r", target: "ns", mode: v1alpha1.DriftCorrect, now: now.Add(time.Hour),
		examined: map[manifest.ID]bool{keyOfEntry(other, "ns"): true}}
	if !failing.decide(apply.Change{Entry: other, Action: apply.Configured}) {
		t.Fatal("not written")
	}
	failing.failed()
	o := book.repos["ns/r"].drifted[keyOfEntry(other, "ns")]
	if o.state != v1alpha1.DriftStateDetected || book.repos["ns/r"].lastCorrected.After(now.Add(time.Minute)) {
		t.Errorf("a failed apply counted as a correction: %+v", o)
	}
}

// TestADriftLeftAloneIsNotComparedAtEveryEvent: an object left drifted (in
// Detect here) whose status others write ten times a second is compared
// with git once more, then again only once recheckDrifted has passed, not
// at every event: each comparison costs a GET and a dry-run.
func TestADriftLeftAloneIsNotComparedAtEveryEvent(t *testing.T) {
	book := newDriftBook(nil, nil)
	now := time.Unix(1_700_000_000, 0)
	syncWith(driftOnly(book, v1alpha1.DriftDetect, 0, now), []apply.Entry{settingsEntry},
		apply.Change{Entry: settingsEntry, Action: apply.Configured, Manager: "hand-edit"})
	id := keyOfEntry(settingsEntry, "ns")
	d := book.repo("ns/r")
	d.baseline[id] = baseline{fingerprint: "as alumiini wrote it"}
	compared := 0
	event := func(i int, at time.Time) {
		seen := drift.Observed{Exists: true, ResourceVersion: fmt.Sprint(100 + i), Fingerprint: "hand-edited"}
		if d.suspicious(id, seen, at) { // what suspects does with each object
			compared++
			d.examining(id, seen, at)
		} else {
			d.remember(id, seen, at)
		}
	}
	for i := range 20 { // 2 s of status writes
		event(i, now.Add(time.Duration(i)*100*time.Millisecond))
	}
	if compared != 1 {
		t.Errorf("20 status writes in 2 s to an object left drifted cost %d comparisons, want 1", compared)
	}
	event(20, now.Add(recheckDrifted))
	if compared != 2 {
		t.Errorf("after %s, %d comparisons, want a second one", recheckDrifted, compared)
	}
}

// TestASameSecondApplyUnderAlumiinisNameIsCompared: an apply under
// alumiini's name within the second of alumiini's own write changes no field
// set and no time in managedFields, so the fingerprint stays; its watch
// event shows the spec's generation (or, for a kind without one, the
// resourceVersion) moved by a write that changed no one else's entry.
// Another controller's write (a status write, an autoscaler's) changes its
// own entry, and costs nothing.
func TestASameSecondApplyUnderAlumiinisNameIsCompared(t *testing.T) {
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, meta.RESTScopeNamespace)
	now := time.Unix(1_700_000_000, 0)
	id := keyOfEntry(settingsEntry, "ns")
	obj := drift.Object{Resource: schema.GroupResource{Resource: "configmaps"}, Namespace: "ns", Name: "settings"}
	written := &unstructured.Unstructured{}
	written.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "alumiini", Operation: metav1.ManagedFieldsOperationApply}})
	fingerprint := drift.Fingerprint(written)
	for _, c := range []struct {
		name       string
		generation int64
		event      drift.Observed
		compared   bool
	}{
		{"an apply under alumiini's name in its second", 2, drift.Observed{Generation: 3, ResourceVersion: "11"}, true},
		{"a status write", 2, drift.Observed{Generation: 2, ResourceVersion: "11", OthersWrote: true}, false},
		{"a status write that changed no entry (its writer's own second)", 2, drift.Observed{Generation: 2, ResourceVersion: "11"}, false},
		{"another writer's spec change (an autoscaler's)", 2, drift.Observed{Generation: 3, ResourceVersion: "11", OthersWrote: true}, false},
		{"a ConfigMap applied under alumiini's name in its second", 0, drift.Observed{ResourceVersion: "11"}, true},
		{"a Service's status write", 0, drift.Observed{ResourceVersion: "11", OthersWrote: true}, false},
	} {
		book := newDriftBook(nil, mapper)
		written.SetGeneration(c.generation)
		written.SetResourceVersion("10")
		book.observe("ns/r", "ns")(settingsEntry, written)
		c.event.Exists, c.event.Fingerprint = true, fingerprint
		if got := book.worthChecking("ns/r", obj, c.event); got != c.compared {
			t.Errorf("%s: worth checking %v, want %v", c.name, got, c.compared)
		}
		// What the worker then sees in the watch's store: no event, so
		// only the note can say.
		later := drift.Observed{Exists: true, Fingerprint: fingerprint, Generation: c.event.Generation, ResourceVersion: "12"}
		book.mu.Lock()
		got := book.repo("ns/r").suspect(id, later, now)
		book.mu.Unlock()
		if got != c.compared {
			t.Errorf("%s, a later write as the worker looks: compared %v, want %v", c.name, got, c.compared)
		}
	}
}

// TestOwnershipOnlyChanges: an object holding git's values whose fields
// another manager took is applied again at once in Correct mode, grace
// period or not (no value changes), and said so. Detect writes nothing and
// reports nothing, so putting a value back by hand clears the report; the
// object is then compared when it changes, and reported once it differs.
func TestOwnershipOnlyChanges(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	inventory := []apply.Entry{settingsEntry}
	taken := apply.Change{Entry: settingsEntry, Action: apply.Configured, Manager: "hand-edit", OwnershipOnly: true}
	edited := apply.Change{Entry: settingsEntry, Action: apply.Configured, Manager: "hand-edit"}

	for _, grace := range []time.Duration{0, time.Hour} {
		book := newDriftBook(nil, nil)
		syncWith(driftOnly(book, v1alpha1.DriftCorrect, grace, now), inventory, edited)
		if len(syncWith(driftOnly(book, v1alpha1.DriftCorrect, grace, now.Add(time.Second)), inventory, taken)) != 1 {
			t.Fatalf("grace %s: Correct did not apply an object whose fields were taken", grace)
		}
		st := book.status("ns/r")
		if o := st.Objects[0]; st.Drifted != 0 || o.State != v1alpha1.DriftStateCorrected || !strings.Contains(o.Message, "applied again to own them") {
			t.Errorf("grace %s: the record of taking fields back: %+v", grace, st)
		}
		if events := book.events("ns/r", now.Add(time.Second)); len(events[ReasonDriftCorrected]) != 1 {
			t.Errorf("grace %s: events %v", grace, events)
		}
	}

	book := newDriftBook(nil, nil)
	syncWith(driftOnly(book, v1alpha1.DriftDetect, 0, now), inventory, edited)
	if st := book.status("ns/r"); st == nil || st.Drifted != 1 {
		t.Fatalf("Detect did not report the edit: %+v", st)
	}
	if len(syncWith(driftOnly(book, v1alpha1.DriftDetect, 0, now.Add(time.Second)), inventory, taken)) != 0 {
		t.Fatal("Detect wrote")
	}
	if st := book.status("ns/r"); st.Drifted != 0 || len(st.Objects) != 0 {
		t.Errorf("the value put back by hand is still reported: %+v", st)
	}
	if events := book.events("ns/r", now.Add(time.Second)); len(events) != 0 {
		t.Errorf("events for fields taken in Detect: %v", events)
	}
	book.mu.Lock()
	d := book.repo("ns/r")
	id := keyOfEntry(settingsEntry, "ns")
	d.baseline[id] = baseline{fingerprint: "fingerprint"}
	suspected := d.suspicious(id, drift.Observed{Exists: true, ResourceVersion: "2", Fingerprint: "fingerprint"}, now.Add(10*time.Second))
	book.mu.Unlock()
	if !suspected {
		t.Error("an object whose fields another manager holds is not compared when it changes")
	}
	later := now.Add(10 * time.Second)
	syncWith(driftOnly(book, v1alpha1.DriftDetect, 0, later), inventory, edited)
	if st := book.status("ns/r"); st.Drifted != 1 || !st.Objects[0].Since.Time.Equal(later) {
		t.Errorf("the later edit is not reported from when it was seen: %+v", st)
	}

	// Switched to Correct, the unreported record is corrected and reported.
	book = newDriftBook(nil, nil)
	syncWith(driftOnly(book, v1alpha1.DriftDetect, 0, now), inventory, taken)
	if st := book.status("ns/r"); st != nil {
		t.Errorf("status.drift for fields taken alone: %+v", st)
	}
	if len(syncWith(driftOnly(book, v1alpha1.DriftCorrect, 0, later), inventory, taken)) != 1 {
		t.Fatal("Correct did not apply what Detect left unreported")
	}
	if st := book.status("ns/r"); st == nil || st.Objects[0].State != v1alpha1.DriftStateCorrected {
		t.Errorf("after the switch to Correct: %+v", st)
	}
}

// TestAfterARestartAnApplyUnderAlumiinisNameIsCompared: with no baseline
// remembered, an object whose apply under alumiini's name is later than
// the GitRepository's last recorded write (its last sync, its last
// correction) was written by someone else while no process watched it.
func TestAfterARestartAnApplyUnderAlumiinisNameIsCompared(t *testing.T) {
	synced := time.Unix(1_700_000_000, 0)
	repo := &v1alpha1.GitRepository{Status: v1alpha1.GitRepositoryStatus{LastSyncTime: &metav1.Time{Time: synced}}}
	d := newDriftBook(nil, nil).repo("ns/r")
	d.lastWrite = lastWrite(repo)
	id := keyOfEntry(settingsEntry, "ns")
	for _, c := range []struct {
		applied time.Time
		want    bool
	}{{synced.Add(-time.Second), false}, {synced, false}, {synced.Add(time.Second), true}} {
		if got := d.suspicious(id, drift.Observed{Exists: true, OwnApplied: c.applied}, synced.Add(time.Hour)); got != c.want {
			t.Errorf("applied %s after the last sync: suspect %v, want %v", c.applied.Sub(synced), got, c.want)
		}
	}
	corrected := synced.Add(time.Minute)
	repo.Status.Drift = &v1alpha1.DriftStatus{LastCorrected: &metav1.Time{Time: corrected}}
	if got := lastWrite(repo); !got.Equal(corrected) {
		t.Errorf("the last write is %s, want the last correction's %s", got, corrected)
	}
	// Drift left in place (Detect, a grace period, a fight's backoff) may be
	// an apply under alumiini's name older than the last full sync: with the
	// status reporting such drift, every object is compared once.
	d.driftReported = true
	if !d.suspicious(id, drift.Observed{Exists: true, OwnApplied: synced.Add(-time.Second)}, synced.Add(time.Hour)) {
		t.Error("with drift reported, an object without a baseline is not compared")
	}
}

// TestAChangePutBackBeforeTheWorkerLooksIsCompared: whoever may write an
// object changes it, then puts its managedFields back as they were (an
// update may set them) before the worker looks, or while a sync is
// comparing other objects. The worker still compares it, for the change the
// event showed, until a sync that started after that event succeeds; a sync
// that fails forgets nothing. alumiini's own write's event, which may come
// before the write's answer, costs no comparison.
func TestAChangePutBackBeforeTheWorkerLooksIsCompared(t *testing.T) {
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, meta.RESTScopeNamespace)
	book := newDriftBook(nil, mapper)
	now := time.Unix(1_700_000_000, 0)
	obj := drift.Object{Resource: schema.GroupResource{Resource: "configmaps"}, Namespace: "ns", Name: "settings"}
	id := keyOfEntry(settingsEntry, "ns")
	inventory := []apply.Entry{settingsEntry}
	written := func(manager, resourceVersion string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetResourceVersion(resourceVersion)
		u.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: manager, Operation: metav1.ManagedFieldsOperationApply}})
		return u
	}
	seen := func(manager, resourceVersion string) drift.Observed {
		return drift.Observed{Exists: true, ResourceVersion: resourceVersion, Fingerprint: drift.Fingerprint(written(manager, resourceVersion))}
	}
	book.observe("ns/r", "ns")(settingsEntry, written("alumiini", "1"))
	asBefore := seen("alumiini", "9")
	look := func() bool {
		book.mu.Lock()
		defer book.mu.Unlock()
		return book.repo("ns/r").suspect(id, asBefore, now)
	}
	syncStarted := func() *driftSync {
		s := driftOnly(book, v1alpha1.DriftCorrect, 0, now)
		s.notesBefore = book.notesSoFar("ns/r")
		return s
	}

	if !book.worthChecking("ns/r", obj, seen("hand-edit", "2")) {
		t.Fatal("a change of field ownership is not worth checking")
	}
	if !look() {
		t.Error("a change put back before the worker looked is not compared")
	}
	if !look() {
		t.Error("the change is forgotten before a sync compared the object")
	}
	syncWith(syncStarted(), inventory)                                  // compared, equal
	book.observe("ns/r", "ns")(settingsEntry, written("alumiini", "9")) // its read, as an unchanged object's is told
	if look() {
		t.Error("the change is compared again after a sync compared the object")
	}

	s := syncStarted()
	book.worthChecking("ns/r", obj, seen("hand-edit", "3")) // during the sync, after its read
	syncWith(s, inventory)
	if !look() {
		t.Error("a change made while a sync compared other objects is forgotten")
	}
	syncWith(syncStarted(), inventory)

	book.worthChecking("ns/r", obj, drift.Observed{ResourceVersion: "4"}) // deleted, then created again as before
	syncStarted().failed()
	if !look() {
		t.Error("a deletion undone before the worker looked is forgotten after a failed sync")
	}
	syncWith(syncStarted(), inventory)

	// alumiini's own write: its event, then its answer.
	book.worthChecking("ns/r", obj, seen("alumiini-again", "5"))
	book.observe("ns/r", "ns")(settingsEntry, written("alumiini-again", "5"))
	asBefore = seen("alumiini-again", "5")
	if look() {
		t.Error("alumiini's own write, seen before its answer, is compared")
	}
}

// TestAnObjectsEventsGoToTheGitRepositoryThatAppliedIt: whoever may write
// an applied object may change its labels; its events still go to the
// GitRepository whose inventory last took it (not one that held it before
// and has not synced since), and to none once no inventory holds it.
func TestAnObjectsEventsGoToTheGitRepositoryThatAppliedIt(t *testing.T) {
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, meta.RESTScopeNamespace)
	book := newDriftBook(nil, mapper)
	obj := drift.Object{Resource: schema.GroupResource{Resource: "configmaps"}, Namespace: "ns", Name: "settings"}
	written := &unstructured.Unstructured{}
	written.SetResourceVersion("1")
	owner := func() string {
		key, _ := book.ownerOf(obj)
		return key
	}
	book.observe("ns/r", "ns")(settingsEntry, written)
	if got := owner(); got != "ns/r" {
		t.Errorf("an object ns/r applied went to %q", got)
	}
	book.observe("ns/b", "ns")(settingsEntry, written) // moved to another repository's path
	if got := owner(); got != "ns/b" {
		t.Errorf("an object ns/b took over went to %q", got)
	}
	book.forget("ns/r") // the stale one: nothing changes
	if got := owner(); got != "ns/b" {
		t.Errorf("after ns/r was forgotten, an object ns/b holds went to %q", got)
	}
	syncWith(&driftSync{book: book, key: "ns/b", target: "ns", mode: v1alpha1.DriftCorrect, fullSync: true,
		examined: map[manifest.ID]bool{}}, nil) // left git
	if got := owner(); got != "" {
		t.Errorf("an object no inventory holds went to %q", got)
	}
}

// TestTheApplyOwnerFollowsAllowBreakGlass: every apply and the finalizer's
// deletion take the GitRepository's break-glass policy from applyOwner.
func TestTheApplyOwnerFollowsAllowBreakGlass(t *testing.T) {
	deny, allow := false, true
	for _, tc := range []struct {
		name   string
		drift  *v1alpha1.DriftSpec
		ignore bool
	}{
		{name: "no drift spec"},
		{name: "unset", drift: &v1alpha1.DriftSpec{}},
		{name: "true", drift: &v1alpha1.DriftSpec{AllowBreakGlass: &allow}},
		{name: "false", drift: &v1alpha1.DriftSpec{AllowBreakGlass: &deny}, ignore: true},
	} {
		repo := &v1alpha1.GitRepository{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r"},
			Spec: v1alpha1.GitRepositorySpec{Drift: tc.drift}}
		if got := applyOwner(repo); got != (apply.Owner{Namespace: "ns", Name: "r", IgnoreBreakGlass: tc.ignore}) {
			t.Errorf("%s: %+v", tc.name, got)
		}
	}
}
