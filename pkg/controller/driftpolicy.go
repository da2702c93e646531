package controller

import (
	"fmt"
	"hash/fnv"
	"time"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/apply"
	"github.com/falsesystems/alumiini/pkg/drift"
	"github.com/falsesystems/alumiini/pkg/manifest"
)

// Fights with other writers.
const (
	// fightWindow: drift within this long of a correction (plus the wait
	// before it) counts as a fight with another writer: after a second
	// correction in a row, each one waits twice as long as the last.
	fightWindow = 15 * time.Second
	// maxFightBackoff caps the wait between corrections of one object.
	maxFightBackoff = 10 * time.Minute
	// listCorrectedFor keeps a corrected object in status.drift.objects.
	listCorrectedFor = 10 * time.Minute
)

// driftSync is one sync's drift policy: which objects that differ from git
// are written (apply.Options.Write), and what the book records after.
type driftSync struct {
	book *driftBook
	key  string
	// target is the namespace objects that name none are applied to.
	target string
	mode   v1alpha1.DriftMode
	grace  time.Duration
	now    time.Time
	// fullSync: every object of the commit is compared (a new commit, a
	// spec change, a request); otherwise only the suspects, of the commit
	// already applied, so every difference is drift.
	fullSync bool
	// changedInGit says whether git's version of an object differs from the
	// one applied before; nil when unknown, and then git wins.
	changedInGit func(manifest.ID) bool
	// examined are the objects this sync compares with git.
	examined map[manifest.ID]bool
	// notesBefore: the book's change notes made before this sync read
	// anything (repoDrift.forgetNotes).
	notesBefore uint64
}

// decide is apply.Options.Write. What git changed is written. Drift is
// written unless the mode (Detect), the grace period or a fight with
// another writer says wait; Ignore writes what a sync finds, unrecorded.
// A change in field ownership alone (apply.Change.OwnershipOnly) skips the
// grace period, since it changes no value, and Detect leaves it unreported
// (recheckUnreported).
func (s *driftSync) decide(c apply.Change) bool {
	if s.mode == v1alpha1.DriftIgnore {
		return true
	}
	s.book.mu.Lock()
	defer s.book.mu.Unlock()
	d := s.book.repo(s.key)
	id := keyOfEntry(c.Entry, s.target)
	o := d.drifted[id]
	if s.fullSync && (s.changedInGit == nil || s.changedInGit(id)) {
		if o != nil && o.drifting() {
			o.correcting, o.byGit = true, true
			o.message = "git changed the object while it differed from git; git's version was applied"
		}
		return true
	}
	if c.OwnershipOnly && s.mode == v1alpha1.DriftDetect {
		s.recheckUnreported(d, id, c)
		return false
	}
	if o == nil || !o.drifting() || o.unreported {
		o = s.newRecord(d, id, c)
		d.lastDetected = s.now
		driftDetected.Inc()
	}
	o.manager, o.deleted = c.Manager, c.Action == apply.Created
	if s.holdBack(d, id, o, c.OwnershipOnly) {
		return false
	}
	o.correcting = true
	f := d.fights[id]
	again := f != nil && s.inFight(f)
	switch {
	case c.OwnershipOnly && again:
		o.message = fmt.Sprintf("fields alumiini applies were taken again, values kept (correction %d in a row; last written by %s); applied again to own them",
			f.count+1, managerName(o.manager))
	case c.OwnershipOnly:
		o.message = "held git's values, but another field manager had taken fields alumiini applies; applied again to own them, so that their next change is seen"
	case again:
		o.message = fmt.Sprintf("differed from git again (correction %d in a row; last written by %s); git's version was re-applied",
			f.count+1, managerName(o.manager))
	default:
		o.message = "differed from git; git's version was re-applied"
	}
	return true
}

func (s *driftSync) newRecord(d *repoDrift, id manifest.ID, c apply.Change) *driftedObject {
	o := &driftedObject{entry: c.Entry, since: s.now, examinedAt: s.now}
	d.drifted[id] = o
	return o
}

// recheckUnreported keeps, in Detect mode, an object that holds git's
// values but whose fields another field manager took. Detect writes
// nothing, and nothing differs to report (an operator who put a value back
// by hand sees the report clear), but that manager's next change to those
// fields moves no ownership, so the object is compared with git whenever it
// changes (at most every recheckDrifted), unreported, until it differs or
// git's next change to it is applied.
func (s *driftSync) recheckUnreported(d *repoDrift, id manifest.ID, c apply.Change) {
	o := d.drifted[id]
	if o == nil || !o.drifting() {
		o = s.newRecord(d, id, c)
	}
	o.state, o.due, o.unreported, o.manager, o.message = v1alpha1.DriftStateDetected, time.Time{}, true, c.Manager, ""
}

// holdBack decides, for drift, whether to leave the object as it is for
// now, and says why in its record.
func (s *driftSync) holdBack(d *repoDrift, id manifest.ID, o *driftedObject, ownershipOnly bool) bool {
	if s.mode == v1alpha1.DriftDetect {
		o.state, o.due = v1alpha1.DriftStateDetected, time.Time{}
		o.message = "differs from git; spec.drift.mode is Detect, so it is left as it is"
		return true
	}
	if !ownershipOnly && s.now.Before(o.since.Add(s.grace)) {
		o.state, o.due = v1alpha1.DriftStateGracePeriod, o.since.Add(s.grace)
		o.message = fmt.Sprintf("differs from git; corrected at %s unless git changes it first (spec.drift.healGracePeriod)",
			o.due.UTC().Format(time.RFC3339))
		return true
	}
	if f := d.fights[id]; f != nil && s.inFight(f) {
		if next := f.last.Add(fightBackoff(f.count)); s.now.Before(next) {
			o.state, o.due = v1alpha1.DriftStateBackingOff, next
			o.message = fmt.Sprintf("changed back %d times after correction, last by %s; the next correction waits until %s",
				f.count, managerName(o.manager), next.UTC().Format(time.RFC3339))
			return true
		}
	}
	return false
}

func (s *driftSync) inFight(f *fight) bool {
	return s.now.Sub(f.last) < fightWindow+fightBackoff(f.count)
}

// fightBackoff is the wait after the given number of corrections in a row:
// none after the first (a human edit and a quick second look), then 2s,
// 4s, … up to maxFightBackoff.
func fightBackoff(corrections int) time.Duration {
	if corrections < 2 {
		return 0
	}
	return min(maxFightBackoff, time.Second<<min(corrections-1, 20))
}

func managerName(m string) string {
	if m == "" {
		return "an unknown writer"
	}
	return fmt.Sprintf("%q", m)
}

// settle records what a successful apply did: corrections made, objects
// found equal to git again, objects held by the break-glass annotation, and
// forgets objects that left the inventory.
func (s *driftSync) settle(result *apply.Result, objects []manifest.Object, inventory []apply.Entry) {
	if s.mode == v1alpha1.DriftIgnore {
		s.book.forget(s.key)
		return
	}
	s.book.mu.Lock()
	defer s.book.mu.Unlock()
	d := s.book.repo(s.key)
	if s.fullSync {
		d.forgetNotes(s.notesBefore, nil)
	} else {
		d.forgetNotes(s.notesBefore, s.examined)
	}
	differs := map[manifest.ID]bool{}
	for _, c := range result.Changes {
		differs[keyOfEntry(c.Entry, s.target)] = true
	}
	held := map[manifest.ID]apply.Entry{}
	for _, e := range result.Held {
		held[keyOfEntry(e, s.target)] = e
	}
	for id, o := range d.drifted {
		switch {
		case o.correcting:
			s.corrected(d, id, o)
		case o.state == v1alpha1.DriftStateHeld && (s.fullSync || s.examined[id]) && !isHeld(held, id):
			delete(d.drifted, id) // released
		case o.drifting() && s.examined[id] && !differs[id]:
			delete(d.drifted, id) // someone put it back
		case o.state == v1alpha1.DriftStateCorrected && s.now.Sub(o.correctedAt) > listCorrectedFor:
			delete(d.drifted, id)
		}
	}
	for id, e := range held {
		o := d.drifted[id]
		if o == nil || o.state != v1alpha1.DriftStateHeld {
			o = &driftedObject{entry: e, state: v1alpha1.DriftStateHeld, since: s.now}
			d.drifted[id] = o
		}
		o.examinedAt = s.now
		o.message = fmt.Sprintf("carries %s: \"true\"; alumiini leaves it alone until the annotation is removed", apply.AnnotationSuspendHeal)
	}
	if s.fullSync {
		s.book.disown(s.key, d.keepOnly(inventory, s.target))
	}
	if s.mode == v1alpha1.DriftDetect || s.grace > 0 {
		d.desired = hashObjects(objects, s.target, d.desired, !s.fullSync)
	} else {
		d.desired = nil
	}
}

// corrected records a correction the apply made; git's own change over
// drift is no fight with another writer.
func (s *driftSync) corrected(d *repoDrift, id manifest.ID, o *driftedObject) {
	byGit := o.byGit
	o.correcting, o.byGit = false, false
	o.state, o.due, o.correctedAt = v1alpha1.DriftStateCorrected, time.Time{}, s.now
	d.lastCorrected = s.now
	if byGit {
		return
	}
	driftCorrected.Inc()
	f := d.fights[id]
	if f == nil || !s.inFight(f) {
		f = &fight{}
		d.fights[id] = f
	}
	f.count++
	f.last = s.now
}

// failed undoes what decide expected of an apply that failed: nothing it
// meant to correct is marked corrected.
func (s *driftSync) failed() {
	s.book.mu.Lock()
	defer s.book.mu.Unlock()
	for _, o := range s.book.repo(s.key).drifted {
		if o.correcting {
			o.correcting, o.byGit = false, false
			if o.drifting() || o.state == "" {
				o.state = v1alpha1.DriftStateDetected
				o.message = "differs from git; correcting it failed (see the GitRepository's message)"
			}
		}
	}
}

// keepOnly forgets every object outside the inventory: what a repository
// stopped holding must not keep memory.
func (d *repoDrift) keepOnly(inventory []apply.Entry, target string) (left []drift.Object) {
	keep := make(map[manifest.ID]bool, len(inventory))
	for _, e := range inventory {
		keep[keyOfEntry(e, target)] = true
	}
	for id := range d.baseline {
		if !keep[id] {
			delete(d.baseline, id)
		}
	}
	for id := range d.drifted {
		if !keep[id] {
			delete(d.drifted, id)
		}
	}
	for id := range d.fights {
		if !keep[id] {
			delete(d.fights, id)
		}
	}
	for obj, id := range d.keys {
		if !keep[id] {
			delete(d.keys, obj)
			left = append(left, obj)
		}
	}
	for id := range d.seenChanged {
		if !keep[id] {
			delete(d.seenChanged, id)
		}
	}
	return left
}

func isHeld(held map[manifest.ID]apply.Entry, id manifest.ID) bool {
	_, ok := held[id]
	return ok
}

// hashObjects records git's version of each object; a sync of suspects saw
// only some objects, so it adds to what was there.
func hashObjects(objects []manifest.Object, target string, previous map[manifest.ID]uint64, partial bool) map[manifest.ID]uint64 {
	hashes := map[manifest.ID]uint64{}
	if partial {
		for id, h := range previous {
			hashes[id] = h
		}
	}
	for _, o := range objects {
		hashes[keyOfObject(o, target)] = hashObject(o)
	}
	return hashes
}

func hashObject(o manifest.Object) uint64 {
	data, _ := o.MarshalJSON()
	h := fnv.New64a()
	h.Write(data)
	return h.Sum64()
}

// changedSince returns whether git's version of an object differs from the
// one recorded (by the last sync, or from previous), or nil when neither
// says.
func (b *driftBook) changedSince(key, target string, objects, previous []manifest.Object) func(manifest.ID) bool {
	b.mu.Lock()
	d := b.repo(key)
	if d.desired == nil && previous != nil {
		// Kept at once: a sync that fails must not make every retry render
		// the previous commit again.
		d.desired = hashObjects(previous, target, nil, false)
	}
	before := d.desired
	b.mu.Unlock()
	if before == nil {
		return nil
	}
	now := hashObjects(objects, target, nil, false)
	return func(id manifest.ID) bool {
		h, ok := before[id]
		return !ok || h != now[id]
	}
}

// needsPrevious says whether telling git's changes from drift needs the
// previously applied commit rendered again: drift may be held back, and
// nothing was recorded since this process started.
func (b *driftBook) needsPrevious(key string, repo *v1alpha1.GitRepository) bool {
	if driftMode(repo) != v1alpha1.DriftDetect && gracePeriod(repo) == 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.repo(key).desired == nil
}
