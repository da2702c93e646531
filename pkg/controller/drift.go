package controller

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/apply"
	"github.com/falsesystems/alumiini/pkg/drift"
	"github.com/falsesystems/alumiini/pkg/manifest"
)

// Bounds of drift handling.
const (
	// maxDriftListed bounds status.drift.objects.
	maxDriftListed = 50
	// watchListWait bounds how long a sync waits for a new watch to list.
	watchListWait = 10 * time.Second
	// recheckDrifted: an object left drifted (Detect, a grace period, a
	// fight) is compared with git again when it changes, at most this often,
	// since nothing but its content tells a status write from someone
	// putting it back.
	recheckDrifted = 5 * time.Second
)

// driftBook keeps, per GitRepository, what drift handling knows: the
// fingerprint of each applied object as alumiini last saw it, the objects
// that differ from git now, and the fights with other writers; and, for
// all of them, which GitRepository each watched object belongs to. It lives in
// memory: after a restart baselines are rebuilt from the watch, and grace
// periods, fights and the drift summary start over.
type driftBook struct {
	watcher *drift.Watcher
	mapper  meta.RESTMapper

	mu    sync.Mutex
	repos map[string]*repoDrift
	// owners is the GitRepository whose inventory last took each watched
	// object (ownerOf).
	owners map[drift.Object]string
}

type repoDrift struct {
	// baseline is each object as alumiini last looked at it.
	baseline map[manifest.ID]baseline
	// drifted are the objects that differ from git now (in Detect mode, in
	// field ownership too, unreported), are held, or were corrected lately.
	drifted map[manifest.ID]*driftedObject
	// desired hashes git's version of each object, kept only when a drifted
	// object may be held back (Detect, or a grace period), to tell a commit
	// that changed the object from one that did not.
	desired map[manifest.ID]uint64
	fights  map[manifest.ID]*fight
	// keys names the watched objects of this GitRepository.
	keys map[drift.Object]manifest.ID
	// seenChanged notes watch events that showed an object changed, until a
	// comparison has read the object as they left it (noteChange).
	seenChanged map[manifest.ID]changeNote
	notes       uint64
	// What the status said at this process's first look, for objects
	// without a baseline: when alumiini last wrote objects of this
	// GitRepository (lastWrite), and whether objects were left differing
	// from git or held (their baselines are not to be taken from the watch).
	firstLooked   bool
	lastWrite     time.Time
	driftReported bool

	lastDetected, lastCorrected time.Time
}

// baseline is what drift compares an object's watch events with: its
// fingerprint, and its generation or, for kinds without one, its
// resourceVersion.
type baseline struct {
	fingerprint     string
	generation      int64
	resourceVersion string
}

func baselineOf(seen drift.Observed) baseline {
	return baseline{fingerprint: seen.Fingerprint, generation: seen.Generation, resourceVersion: seen.ResourceVersion}
}

// rewrittenSince says whether a watch event (seen) shows a write no
// fingerprint shows: its spec changed (or, for a kind that counts no
// generation, anything of it), while alumiini's apply entry still holds the
// same fields at the same time and the write changed no one else's entry.
// An apply under alumiini's name within the second of alumiini's own write
// leaves that entry as it was (times are whole seconds). Asked of events
// only: from the watch's store alone a status write is not told apart.
func (b baseline) rewrittenSince(seen drift.Observed) bool {
	if seen.Fingerprint != b.fingerprint || seen.OthersWrote {
		return false
	}
	if seen.Generation != 0 {
		return seen.Generation != b.generation
	}
	return seen.ResourceVersion != b.resourceVersion
}

// changeNote is a watch event's resourceVersion ("" for a deletion) and
// its place among the GitRepository's notes.
type changeNote struct {
	resourceVersion string
	seq             uint64
}

type driftedObject struct {
	entry   apply.Entry
	state   v1alpha1.DriftState
	manager string
	deleted bool
	since   time.Time
	// due is when the object is next compared with git (grace period,
	// backoff, a re-check), zero for none.
	due time.Time
	// seenVersion and examinedAt: the resourceVersion last compared with
	// git, and when.
	seenVersion string
	examinedAt  time.Time
	// correcting: this sync writes git's version over the drift; byGit:
	// because git changed the object, not to correct it.
	correcting, byGit bool
	// unreported: in Detect mode, only field ownership differs; compared
	// with git when it changes, never reported (recheckUnreported).
	unreported  bool
	correctedAt time.Time
	message     string
}

// drifting: it differs from git now and was left so (an unreported
// record too: compared with git when it changes, like the others).
func (o *driftedObject) drifting() bool {
	return o.state == v1alpha1.DriftStateDetected || o.state == v1alpha1.DriftStateGracePeriod ||
		o.state == v1alpha1.DriftStateBackingOff
}

type fight struct {
	count int
	last  time.Time
}

func newDriftBook(watcher *drift.Watcher, mapper meta.RESTMapper) *driftBook {
	return &driftBook{watcher: watcher, mapper: mapper, repos: map[string]*repoDrift{}, owners: map[drift.Object]string{}}
}

// repo is key's record; callers hold b.mu.
func (b *driftBook) repo(key string) *repoDrift {
	d := b.repos[key]
	if d == nil {
		d = &repoDrift{baseline: map[manifest.ID]baseline{}, drifted: map[manifest.ID]*driftedObject{},
			fights: map[manifest.ID]*fight{}, keys: map[drift.Object]manifest.ID{}, seenChanged: map[manifest.ID]changeNote{}}
		b.repos[key] = d
	}
	return d
}

// ownerOf is the GitRepository whose inventory, as this process has seen
// it, last took obj, whatever its labels say now. Whoever may write the
// object can change its labels, and its events went to the GitRepository
// they named (or none): relabelled, changed, and its managedFields put back,
// it was never compared (attacker review).
func (b *driftBook) ownerOf(obj drift.Object) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key, ok := b.owners[obj]
	return key, ok
}

// own records that key's inventory holds obj; callers hold b.mu.
func (b *driftBook) own(key string, d *repoDrift, obj drift.Object, id manifest.ID) {
	d.keys[obj] = id
	b.owners[obj] = key
}

// forget drops what the book keeps of a deleted GitRepository.
func (b *driftBook) forget(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := b.repos[key]; d != nil {
		b.disown(key, slices.Collect(maps.Keys(d.keys)))
	}
	delete(b.repos, key)
}

// disown drops the objects key's inventory no longer holds from owners;
// callers hold b.mu.
func (b *driftBook) disown(key string, objs []drift.Object) {
	for _, obj := range objs {
		if b.owners[obj] == key {
			delete(b.owners, obj)
		}
	}
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

// applyOwner is repo as the owner of what it applies.
func applyOwner(repo *v1alpha1.GitRepository) apply.Owner {
	allow := repo.Spec.Drift == nil || repo.Spec.Drift.AllowBreakGlass == nil || *repo.Spec.Drift.AllowBreakGlass
	return apply.Owner{Namespace: repo.Namespace, Name: repo.Name, IgnoreBreakGlass: !allow}
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

// readDiscoveryAgain has the mapper read discovery again, as often as
// apply.SharedMapper lets idle passes, and says whether it did. An applied
// kind the mapper does not know may be one it read discovery too early for
// (alumiini's own GitRepository, read before the aggregator saw alumiini
// available): its objects would go unwatched, so never compared with git,
// until a new commit's apply read discovery again. The bound is for kinds
// truly gone (a deleted CRD's, until the next prune): watch runs at every
// idle check. It runs outside b.mu, as watch does, so the read that follows
// holds up no drift event.
func (b *driftBook) readDiscoveryAgain() bool {
	shared, ok := b.mapper.(*apply.SharedMapper)
	return ok && shared.ReadAgainWhenIdle()
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

// watch makes sure every kind of entries is watched, waiting a bounded time
// for the watches that have not listed yet; one that cannot list (RBAC)
// only leaves its objects unknown.
func (b *driftBook) watch(ctx context.Context, entries []apply.Entry) {
	seen := map[schema.GroupKind]bool{}
	var unlisted []cache.InformerSynced
	for _, e := range entries {
		gk := schema.GroupKind{Group: e.Group, Kind: e.Kind}
		if seen[gk] {
			continue
		}
		seen[gk] = true
		_, resource, ok := b.resource(e)
		if !ok && b.readDiscoveryAgain() {
			_, resource, ok = b.resource(e)
		}
		if ok {
			if synced := b.watcher.Watch(resource); !synced() {
				unlisted = append(unlisted, synced)
			}
		}
	}
	if len(unlisted) > 0 {
		ctx, cancel := context.WithTimeout(ctx, watchListWait)
		defer cancel()
		cache.WaitForCacheSync(ctx.Done(), unlisted...)
	}
}

// suspects returns the applied objects the watch says may differ from git
// (see suspicious). It costs no API call, so an idle interval stays free.
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
	if !d.firstLooked {
		// Only the status this process found counts: its own status writes
		// move lastSyncTime and clear status.drift without comparing
		// objects it never looked at (a watch that had not listed yet).
		d.firstLooked = true
		d.lastWrite = lastWrite(repo)
		d.driftReported = repo.Status.Drift != nil && (repo.Status.Drift.Drifted > 0 || repo.Status.Drift.Held > 0)
	}
	suspects := map[manifest.ID]bool{}
	for _, e := range entries {
		id := keyOfEntry(e, target)
		obj, _, ok := b.resource(e)
		if !ok {
			continue
		}
		b.own(key, d, obj, id)
		seen, known := b.watcher.Lookup(obj)
		if !known {
			continue
		}
		if d.suspect(id, seen, now) {
			suspects[id] = true
			d.examining(id, seen, now)
		} else {
			d.remember(id, seen, now)
		}
	}
	return suspects
}

// suspect decides, as the worker looks, whether to compare an object with
// git: for what the watch shows now (suspicious), or for a change a watch
// event showed since the last look (noteChange).
func (d *repoDrift) suspect(id manifest.ID, seen drift.Observed, now time.Time) bool {
	_, noted := d.seenChanged[id]
	return noted || d.suspicious(id, seen, now)
}

// suspicious says whether what the watch holds of an object may differ from
// git: it is gone; its field ownership changed since alumiini's last look
// (or, with nothing remembered since a restart, someone else wrote it after
// alumiini, or applied under alumiini's name after alumiini's last write,
// or the status says drift was left in place); or it was left drifted and
// has changed since, or is due.
func (d *repoDrift) suspicious(id manifest.ID, seen drift.Observed, now time.Time) bool {
	base, remembered := d.baseline[id]
	o := d.drifted[id]
	switch {
	case !seen.Exists:
		return true
	case remembered && seen.Fingerprint != base.fingerprint:
		return true
	case !remembered && (seen.ForeignWrite || seen.OwnApplied.After(d.lastWrite) || d.driftReported):
		return true
	case o == nil || !o.drifting():
		return false
	case !o.due.IsZero() && !now.Before(o.due):
		return true
	}
	return seen.ResourceVersion != o.seenVersion && now.Sub(o.examinedAt) >= recheckDrifted
}

// examining notes that a suspect is about to be compared with git.
func (d *repoDrift) examining(id manifest.ID, seen drift.Observed, now time.Time) {
	o := d.drifted[id]
	if seen.Held || o != nil && o.drifting() {
		// Held as it is (or carrying the annotation where it holds nothing:
		// the correction's write then moves the baseline again), or left
		// drifted (Detect, a grace period, a fight's backoff): look again
		// when the fingerprint changes, or by the re-check rule, not at
		// every event. Otherwise any status write to
		// it cost a GET and a dry-run (attacker review).
		d.baseline[id] = baselineOf(seen)
	}
	if o != nil {
		o.seenVersion, o.examinedAt = seen.ResourceVersion, now
	}
}

// remember takes an object the watch shows untouched as the baseline, and
// schedules a re-check of a drifted object that changed too soon after the
// last one.
func (d *repoDrift) remember(id manifest.ID, seen drift.Observed, now time.Time) {
	if _, ok := d.baseline[id]; !ok {
		d.baseline[id] = baselineOf(seen)
	}
	if o := d.drifted[id]; o != nil && o.drifting() && seen.ResourceVersion != o.seenVersion {
		if recheck := o.examinedAt.Add(recheckDrifted); o.due.IsZero() || recheck.Before(o.due) {
			o.due = recheck
		}
	}
}

// lastWrite is when alumiini last wrote objects of repo, as far as its
// status says: its last sync, or its last drift correction. Writes happen
// before the status that records them (whole seconds, both), so an apply
// under alumiini's name later than this is someone else's, made while no
// process remembered the object (a restart, a GitRepository taken over
// from another replica). Objects a correction wrote (it records the time it
// started) and, with kube-apiserver's clock ahead of alumiini's, those of
// the last sync look later: each costs one comparison after a restart, no
// write. With kube-apiserver's clock behind, an apply under alumiini's name
// that little after its last write is missed.
func lastWrite(repo *v1alpha1.GitRepository) time.Time {
	var last time.Time
	if t := repo.Status.LastSyncTime; t != nil {
		last = t.Time
	}
	if d := repo.Status.Drift; d != nil && d.LastCorrected != nil && d.LastCorrected.After(last) {
		last = d.LastCorrected.Time
	}
	return last
}

// worthChecking says whether a change the watch reported may be drift: a
// status write by another controller, or a field nobody applied, is not.
func (b *driftBook) worthChecking(key string, obj drift.Object, seen drift.Observed) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.repo(key)
	id, ok := d.keys[obj]
	if !ok {
		return false // not in the inventory this process has seen
	}
	d.noteChange(id, seen)
	base, remembered := d.baseline[id]
	rewritten := remembered && base.rewrittenSince(seen)
	return rewritten || d.suspicious(id, seen, time.Now()) || seen.Exists && d.drifted[id] != nil && d.drifted[id].drifting()
}

// noteChange notes a watch event that showed an object deleted, or its
// fingerprint off its baseline (or none taken yet), or rewritten unseen by
// the fingerprint (rewrittenSince, which only an event can tell). Whoever
// may write an object can change it and then, before the worker looks, put its
// managedFields back as they were (an update may set them) or delete it and
// create it again with them: the worker, deciding from what the watch shows
// then, saw nothing. A note stays until a sync that started after it
// compared the object and succeeded (forgetNotes), or until alumiini's own
// write of that very version is answered (its event may come before its
// answer); a read made before the event does not clear it, nor does a sync
// that failed.
func (d *repoDrift) noteChange(id manifest.ID, seen drift.Observed) {
	base, remembered := d.baseline[id]
	if !seen.Exists || !remembered || seen.Fingerprint != base.fingerprint || base.rewrittenSince(seen) {
		d.notes++
		d.seenChanged[id] = changeNote{resourceVersion: seen.ResourceVersion, seq: d.notes}
	}
}

// notesSoFar counts the change notes made of key's objects so far.
func (b *driftBook) notesSoFar(key string) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.repo(key).notes
}

// forgetNotes drops the notes a successful sync's comparisons covered:
// those made before it started (upTo) of the objects it compared (all of
// them for nil).
func (d *repoDrift) forgetNotes(upTo uint64, compared map[manifest.ID]bool) {
	for id, n := range d.seenChanged {
		if n.seq <= upTo && (compared == nil || compared[id]) {
			delete(d.seenChanged, id)
		}
	}
}

// observe remembers the fingerprint of an object as the apply left it.
func (b *driftBook) observe(key, target string) func(apply.Entry, metav1.Object) {
	return func(e apply.Entry, obj metav1.Object) {
		fp := drift.Fingerprint(obj)
		watched, _, mapped := b.resource(e)
		b.mu.Lock()
		defer b.mu.Unlock()
		d := b.repo(key)
		id := keyOfEntry(e, target)
		d.baseline[id] = baseline{fingerprint: fp, generation: obj.GetGeneration(), resourceVersion: obj.GetResourceVersion()}
		if n, ok := d.seenChanged[id]; ok && n.resourceVersion == obj.GetResourceVersion() {
			delete(d.seenChanged, id) // the event of this very version
		}
		if mapped {
			b.own(key, d, watched, id)
		}
	}
}

// next is when an object is next due for a look, zero if none is; a due
// time already past is left to the interval (its object is not watched).
func (b *driftBook) next(key string) time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	var next time.Time
	now := time.Now()
	for _, o := range b.repo(key).drifted {
		if o.drifting() && o.due.After(now) && (next.IsZero() || o.due.Before(next)) {
			next = o.due
		}
	}
	return next
}

// status is the drift summary for the GitRepository's status: objects
// drifting first, then held, then corrected, each by name.
func (b *driftBook) status(key string) *v1alpha1.DriftStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.repo(key)
	objects := make([]*driftedObject, 0, len(d.drifted))
	for _, o := range d.drifted {
		if !o.unreported {
			objects = append(objects, o)
		}
	}
	if len(objects) == 0 && d.lastDetected.IsZero() {
		return nil
	}
	s := &v1alpha1.DriftStatus{LastDetected: timeOrNil(d.lastDetected), LastCorrected: timeOrNil(d.lastCorrected)}
	rank := func(o *driftedObject) int {
		switch {
		case o.drifting():
			return 0
		case o.state == v1alpha1.DriftStateHeld:
			return 1
		}
		return 2
	}
	sort.Slice(objects, func(i, j int) bool {
		if ri, rj := rank(objects[i]), rank(objects[j]); ri != rj {
			return ri < rj
		}
		return idOf(objects[i].entry).String() < idOf(objects[j].entry).String()
	})
	for _, o := range objects {
		switch {
		case o.state == v1alpha1.DriftStateHeld:
			s.Held++
		case o.drifting():
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
// annotation (every sync that looked at them, while the annotation stays).
func (b *driftBook) events(key string, since time.Time) map[string][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := map[string][]string{}
	for _, o := range b.repo(key).drifted {
		if o.unreported {
			continue
		}
		var reason string
		switch {
		case o.state == v1alpha1.DriftStateHeld && !o.examinedAt.Before(since):
			reason = ReasonHealSuspended
		case o.state == v1alpha1.DriftStateCorrected && !o.correctedAt.Before(since):
			reason = ReasonDriftCorrected
		case o.drifting() && !o.since.Before(since):
			reason = ReasonDriftDetected
		default:
			continue // told already
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
