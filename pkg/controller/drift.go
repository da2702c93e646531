package controller

import (
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"sync"
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

// Bounds of drift handling.
const (
	// maxDriftListed bounds status.drift.objects.
	maxDriftListed = 50
	// fightWindow: drift within this long of a correction (plus the wait
	// before it) counts as a fight with another writer: after a second
	// correction in a row, each one waits twice as long as the last.
	fightWindow = 15 * time.Second
	// listCorrectedFor keeps a corrected object in status.drift.objects.
	listCorrectedFor = 10 * time.Minute
	// maxFightBackoff caps the wait between corrections of one object.
	maxFightBackoff = 10 * time.Minute
	// watchListWait bounds how long a sync waits for a new watch to list.
	watchListWait = 10 * time.Second
)

// driftBook keeps, per GitRepository, what drift handling knows: the
// fingerprint of each applied object as alumiini last saw it, the objects
// that differ from git now, and the fights with other writers.
type driftBook struct {
	watcher *drift.Watcher
	mapper  meta.RESTMapper

	mu    sync.Mutex
	repos map[string]*repoDrift
}

type repoDrift struct {
	// baseline is each object's fingerprint after alumiini's last look.
	baseline map[manifest.ID]string
	// drifted are the objects that differ from git now, or were corrected
	// by the last sync.
	drifted map[manifest.ID]*driftedObject
	// desired hashes git's version of each object, kept only when a drifted
	// object may be held back (Detect, or a grace period), to tell a commit
	// that changed the object from one that did not.
	desired map[manifest.ID]uint64
	fights  map[manifest.ID]*fight
	// keys names the watched objects of this GitRepository.
	keys map[drift.Object]manifest.ID

	lastDetected, lastCorrected time.Time
}

type driftedObject struct {
	entry   apply.Entry
	state   v1alpha1.DriftState
	manager string
	deleted bool
	since   time.Time
	// due is when the next correction may happen (grace period, backoff).
	due time.Time
	// seenVersion is the resourceVersion last compared with git: a drifted
	// object is compared again when it changes (someone put it back).
	seenVersion string
	// correctedAt: a corrected object stays listed for listCorrectedFor.
	correctedAt time.Time
	message     string
}

type fight struct {
	count int
	last  time.Time
}

func newDriftBook(watcher *drift.Watcher, mapper meta.RESTMapper) *driftBook {
	return &driftBook{watcher: watcher, mapper: mapper, repos: map[string]*repoDrift{}}
}

func (b *driftBook) repo(key string) *repoDrift {
	d := b.repos[key]
	if d == nil {
		d = &repoDrift{baseline: map[manifest.ID]string{}, drifted: map[manifest.ID]*driftedObject{},
			fights: map[manifest.ID]*fight{}, keys: map[drift.Object]manifest.ID{}}
		b.repos[key] = d
	}
	return d
}

// forget drops what the book keeps of a deleted GitRepository.
func (b *driftBook) forget(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.repos, key)
}

func driftMode(repo *v1alpha1.GitRepository) v1alpha1.DriftMode {
	if repo.Spec.Drift == nil || repo.Spec.Drift.Mode == "" {
		return v1alpha1.DriftCorrect
	}
	return repo.Spec.Drift.Mode
}

func gracePeriod(repo *v1alpha1.GitRepository) time.Duration {
	if repo.Spec.Drift == nil {
		return 0
	}
	d, _ := time.ParseDuration(repo.Spec.Drift.HealGracePeriod)
	return d
}

func ignoreRules(repo *v1alpha1.GitRepository) []apply.IgnoreRule {
	if repo.Spec.Drift == nil {
		return nil
	}
	rules := make([]apply.IgnoreRule, 0, len(repo.Spec.Drift.Ignore))
	for _, r := range repo.Spec.Drift.Ignore {
		rules = append(rules, apply.IgnoreRule{Group: r.Group, Kind: r.Kind, Name: r.Name, Paths: r.Paths})
	}
	return rules
}

// resource maps an inventory entry to what the watch is keyed by, and the
// resource to watch.
func (b *driftBook) resource(e apply.Entry) (drift.Object, schema.GroupVersionResource, bool) {
	mapping, err := b.mapper.RESTMapping(schema.GroupKind{Group: e.Group, Kind: e.Kind}, e.Version)
	if err != nil {
		return drift.Object{}, schema.GroupVersionResource{}, false
	}
	namespace := e.Namespace
	if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
		namespace = ""
	}
	return drift.Object{Resource: mapping.Resource.GroupResource(), Namespace: namespace, Name: e.Name}, mapping.Resource, true
}

// watch makes sure every kind of entries is watched, waiting a bounded
// time for new watches to list.
func (b *driftBook) watch(ctx context.Context, entries []apply.Entry) {
	seen := map[schema.GroupKind]bool{}
	for _, e := range entries {
		gk := schema.GroupKind{Group: e.Group, Kind: e.Kind}
		if seen[gk] {
			continue
		}
		seen[gk] = true
		if _, resource, ok := b.resource(e); ok {
			b.watcher.Watch(resource)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, watchListWait)
	defer cancel()
	_ = b.watcher.WaitForSync(ctx) // an unlisted watch only means "unknown" below
}

// suspects returns the applied objects the watch says may differ from git:
// deleted, or whose field ownership changed since alumiini last looked (or,
// with nothing remembered since a restart, written by someone else after
// alumiini). It costs no API call, so an idle interval stays free.
func (b *driftBook) suspects(ctx context.Context, key string, repo *v1alpha1.GitRepository) map[manifest.ID]bool {
	target := targetNamespace(repo)
	entries := fromInventory(repo.Status.Inventory)
	if len(entries) == 0 {
		return nil
	}
	b.watch(ctx, entries)
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.repo(key)
	suspects := map[manifest.ID]bool{}
	for _, e := range entries {
		id := keyOfEntry(e, target)
		obj, _, ok := b.resource(e)
		if !ok {
			continue
		}
		d.keys[obj] = id
		seen, known := b.watcher.Lookup(obj)
		if !known {
			continue
		}
		if d.suspect(id, seen, now, true) {
			suspects[id] = true
		}
	}
	return suspects
}

// suspect says whether what the watch holds of an object may differ from
// git. With record, it also remembers what it judged by: an unremembered
// object the watch shows untouched becomes the baseline, and a drifted one
// is marked as compared at this version.
func (d *repoDrift) suspect(id manifest.ID, seen drift.Observed, now time.Time, record bool) bool {
	base, remembered := d.baseline[id]
	o := d.drifted[id]
	stillDrifted := o != nil && o.state != v1alpha1.DriftStateCorrected && o.state != v1alpha1.DriftStateHeld
	switch {
	case !seen.Exists, seen.Held:
		return true
	case remembered && seen.Fingerprint != base:
		return true
	case !remembered && seen.ForeignWrite:
		return true
	case stillDrifted && !o.due.IsZero() && !now.Before(o.due):
		return true
	case stillDrifted && seen.ResourceVersion != o.seenVersion:
		if record {
			o.seenVersion = seen.ResourceVersion
		}
		return true
	case !remembered && record:
		d.baseline[id] = seen.Fingerprint
	}
	return false
}

// worthChecking says whether a change the watch reported may be drift, so
// status writes by other controllers cost no sync.
func (b *driftBook) worthChecking(key string, obj drift.Object, seen drift.Observed) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.repo(key)
	id, ok := d.keys[obj]
	if !ok {
		return !seen.Exists // not applied by the last sync this process saw, unless deleted
	}
	return d.suspect(id, seen, time.Now(), false)
}

// observe remembers the fingerprint of an object as the apply left it.
func (b *driftBook) observe(key, target string) func(apply.Entry, *unstructured.Unstructured) {
	return func(e apply.Entry, obj *unstructured.Unstructured) {
		fp := drift.Fingerprint(obj)
		watched, _, mapped := b.resource(e)
		b.mu.Lock()
		defer b.mu.Unlock()
		d := b.repo(key)
		id := keyOfEntry(e, target)
		d.baseline[id] = fp
		if mapped {
			d.keys[watched] = id
		}
	}
}

// driftSync is one sync's drift policy: which differing objects to write.
type driftSync struct {
	book *driftBook
	key  string
	// target is the namespace objects that name none are applied to.
	target string
	mode   v1alpha1.DriftMode
	// gitChanged is false for a sync of the commit already applied, where
	// every difference is drift.
	gitChanged bool
	grace      time.Duration
	now        time.Time
	// changed says whether git's version of an object differs from the
	// last sync's; nil when not known (then git is taken to have changed it).
	changed func(manifest.ID) bool
	// examined are the objects this sync compared with git.
	examined map[manifest.ID]bool
}

// decide is apply.Options.Write: git changes are written; drift is written
// unless the mode, the grace period or a fight with another writer says wait.
func (s *driftSync) decide(c apply.Change) bool {
	s.book.mu.Lock()
	defer s.book.mu.Unlock()
	d := s.book.repo(s.key)
	id := keyOfEntry(c.Entry, s.target)
	if s.gitChanged && (s.changed == nil || s.changed(id)) {
		if o := d.drifted[id]; o != nil && o.state != v1alpha1.DriftStateCorrected {
			o.state, o.due, o.correctedAt = v1alpha1.DriftStateCorrected, time.Time{}, s.now
			o.message = "git changed the object while it had drifted; the git state was applied"
			d.lastCorrected = s.now
		}
		return true
	}
	o := d.drifted[id]
	if o == nil || o.state == v1alpha1.DriftStateCorrected {
		o = &driftedObject{entry: c.Entry, since: s.now}
		d.drifted[id] = o
		d.lastDetected = s.now
		driftDetected.Inc()
	}
	o.manager, o.deleted = c.Manager, c.Action == apply.Created
	switch {
	case s.mode == v1alpha1.DriftDetect:
		o.state, o.due, o.message = v1alpha1.DriftStateDetected, time.Time{}, "differs from git; spec.drift.mode is Detect, so it is left as it is"
		return false
	case s.now.Before(o.since.Add(s.grace)):
		o.state, o.due = v1alpha1.DriftStateGracePeriod, o.since.Add(s.grace)
		o.message = fmt.Sprintf("differs from git; corrected at %s unless git changes it first (spec.drift.healGracePeriod)",
			o.due.UTC().Format(time.RFC3339))
		return false
	}
	f := d.fights[id]
	if f != nil && s.now.Sub(f.last) < fightWindow+fightBackoff(f.count) {
		if next := f.last.Add(fightBackoff(f.count)); s.now.Before(next) {
			o.state, o.due = v1alpha1.DriftStateBackingOff, next
			o.message = fmt.Sprintf("changed back %d times after correction, last by %q; the next correction waits until %s",
				f.count, managerName(o.manager), next.UTC().Format(time.RFC3339))
			return false
		}
	} else {
		f = &fight{}
		d.fights[id] = f
	}
	f.count++
	f.last = s.now
	o.state, o.due, o.correctedAt = v1alpha1.DriftStateCorrected, time.Time{}, s.now
	o.message = "differed from git; the git state was re-applied"
	if f.count > 1 {
		o.message = fmt.Sprintf("differed from git again (%d corrections in a row, last changed by %q); the git state was re-applied",
			f.count, managerName(o.manager))
	}
	d.lastCorrected = s.now
	driftCorrected.Inc()
	return true
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
	return m
}

// settle closes a sync: objects it examined and found equal to git are no
// longer drifted, corrected ones are listed once more, and the held ones are
// listed as held. It reports whether the drift summary changed.
func (s *driftSync) settle(result *apply.Result, objects []manifest.Object) {
	s.book.mu.Lock()
	defer s.book.mu.Unlock()
	d := s.book.repo(s.key)
	differs := map[manifest.ID]bool{}
	for _, c := range result.Changes {
		differs[keyOfEntry(c.Entry, s.target)] = true
	}
	for id, o := range d.drifted {
		switch {
		case o.state == v1alpha1.DriftStateHeld:
			delete(d.drifted, id) // listed again below while still held
		case s.examined[id] && !differs[id] && o.state != v1alpha1.DriftStateCorrected:
			delete(d.drifted, id) // someone put it back
		case o.state == v1alpha1.DriftStateCorrected && !differs[id] && s.now.Sub(o.correctedAt) > listCorrectedFor:
			delete(d.drifted, id) // listed for a while after its correction
		}
	}
	for _, e := range result.Held {
		d.drifted[keyOfEntry(e, s.target)] = &driftedObject{entry: e, state: v1alpha1.DriftStateHeld, since: s.now,
			message: fmt.Sprintf("carries %s: \"true\"; alumiini leaves it alone until the annotation is removed", apply.AnnotationSuspendHeal)}
	}
	if s.mode == v1alpha1.DriftDetect || s.grace > 0 {
		d.desired = hashObjects(objects, s.target, d.desired, !s.gitChanged)
	} else {
		d.desired = nil
	}
}

// hashObjects records git's version of each object; a drift-only sync saw
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
// one last recorded, or nil when nothing was recorded.
func (b *driftBook) changedSince(key, target string, objects []manifest.Object) func(manifest.ID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	previous := b.repo(key).desired
	if previous == nil {
		return nil
	}
	now := map[manifest.ID]uint64{}
	for _, o := range objects {
		now[keyOfObject(o, target)] = hashObject(o)
	}
	return func(id manifest.ID) bool {
		before, ok := previous[id]
		return !ok || before != now[id]
	}
}

// next is when a held-back correction falls due, zero if none.
func (b *driftBook) next(key string) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	var next time.Time
	for _, o := range b.repo(key).drifted {
		if !o.due.IsZero() && (next.IsZero() || o.due.Before(next)) {
			next = o.due
		}
	}
	return next
}

// status is the drift summary for the GitRepository's status.
func (b *driftBook) status(key string) *v1alpha1.DriftStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.repo(key)
	if len(d.drifted) == 0 && d.lastDetected.IsZero() {
		return nil
	}
	s := &v1alpha1.DriftStatus{LastDetected: timeOrNil(d.lastDetected), LastCorrected: timeOrNil(d.lastCorrected)}
	objects := make([]*driftedObject, 0, len(d.drifted))
	for _, o := range d.drifted {
		objects = append(objects, o)
	}
	sort.Slice(objects, func(i, j int) bool { return idOf(objects[i].entry).String() < idOf(objects[j].entry).String() })
	for _, o := range objects {
		switch o.state {
		case v1alpha1.DriftStateHeld:
			s.Held++
		case v1alpha1.DriftStateDetected, v1alpha1.DriftStateGracePeriod, v1alpha1.DriftStateBackingOff:
			s.Drifted++
		}
		if len(s.Objects) < maxDriftListed {
			s.Objects = append(s.Objects, v1alpha1.DriftedObject{Group: o.entry.Group, Kind: o.entry.Kind,
				Namespace: o.entry.Namespace, Name: o.entry.Name, State: o.state, Manager: o.manager,
				Deleted: o.deleted, Since: metav1.NewTime(o.since), Message: o.message})
		}
	}
	return s
}

// Event reasons of drift.
const (
	ReasonDriftDetected  = "DriftDetected"
	ReasonDriftCorrected = "DriftCorrected"
	ReasonHealSuspended  = "HealSuspended"
)

// events lists, by Event reason, what a sync that started at since should
// tell: drift it found or corrected, and objects held by the break-glass
// annotation (every sync, while the annotation stays).
func (b *driftBook) events(key string, since time.Time) map[string][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := map[string][]string{}
	for _, o := range b.repo(key).drifted {
		reason := ReasonDriftDetected
		switch {
		case o.state == v1alpha1.DriftStateHeld:
			reason = ReasonHealSuspended
		case o.state == v1alpha1.DriftStateCorrected:
			reason = ReasonDriftCorrected
		case o.since.Before(since):
			continue // told when found
		}
		line := fmt.Sprintf("%s: %s", idOf(o.entry), o.message)
		if o.manager != "" && reason != ReasonHealSuspended {
			line = fmt.Sprintf("%s (last written by %q): %s", idOf(o.entry), o.manager, o.message)
		}
		lines[reason] = append(lines[reason], line)
	}
	for _, l := range lines {
		slices.Sort(l)
	}
	return lines
}

func timeOrNil(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t)
	return &mt
}

// keyOfEntry and keyOfObject name an object the same way before and after
// apply gives it a namespace: an empty namespace reads as the target one. A
// kind is either namespaced or not, so no two objects share a key.
func keyOfEntry(e apply.Entry, target string) manifest.ID {
	id := idOf(e)
	if id.Namespace == "" {
		id.Namespace = target
	}
	return id
}

func keyOfObject(o manifest.Object, target string) manifest.ID {
	id := manifest.IDOf(o.Unstructured)
	if id.Namespace == "" {
		id.Namespace = target
	}
	return id
}

func targetNamespace(repo *v1alpha1.GitRepository) string {
	if repo.Spec.TargetNamespace != "" {
		return repo.Spec.TargetNamespace
	}
	return repo.Namespace
}

func idOf(e apply.Entry) manifest.ID {
	return manifest.ID{Group: e.Group, Kind: e.Kind, Namespace: e.Namespace, Name: e.Name}
}
