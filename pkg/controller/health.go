package controller

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/apply"
	"github.com/falsesystems/alumiini/pkg/cdevents"
)

// The reasons of the Healthy condition.
const (
	ReasonHealthCheckPending = "HealthCheckPending"
	ReasonHealthy            = "Healthy"
	ReasonHealthTimeout      = "HealthTimeout"
)

// healthWaits runs at most one health wait per GitRepository, off its
// worker: a wait holds no apply slot and never delays another
// GitRepository, and a sync that applies again cancels it.
type healthWaits struct {
	mu      sync.Mutex
	running map[string]*healthWait
}

type healthWait struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// start cancels key's wait, if any, and runs wait in its place under a
// context of parent's. wait's current reports whether it is still key's
// wait: one stopped or replaced meanwhile must not write its outcome.
func (h *healthWaits) start(parent context.Context, key string, wait func(ctx context.Context, current func() bool)) {
	ctx, cancel := context.WithCancel(parent)
	w := &healthWait{ctx: ctx, cancel: cancel}
	h.mu.Lock()
	if h.running == nil {
		h.running = map[string]*healthWait{}
	}
	if old := h.running[key]; old != nil {
		old.cancel()
	}
	h.running[key] = w
	h.mu.Unlock()
	go func() {
		defer func() {
			h.mu.Lock()
			if h.running[key] == w {
				delete(h.running, key)
			}
			h.mu.Unlock()
			cancel()
		}()
		// Judging a tenant's odd live object may panic: the wait ends, and
		// the next sync waits again.
		defer logPanic(klog.FromContext(parent), "Panic in a health wait; it ends, and the next sync waits again")
		wait(ctx, func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.running[key] == w
		})
	}()
}

// active reports whether key has a wait running: not one whose context
// ended (its worker crashed and was restarted) and that has yet to return.
func (h *healthWaits) active(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.running[key]
	return w != nil && w.ctx.Err() == nil
}

// stop cancels key's wait.
func (h *healthWaits) stop(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w := h.running[key]; w != nil {
		w.cancel()
		delete(h.running, key)
	}
}

// healthTarget is one object a wait waits for.
type healthTarget struct {
	gvk       schema.GroupVersionKind
	namespace string
	name      string
	// byName: someone else's (spec.healthChecks, spec.rolloutRef), watched
	// by name rather than by our label.
	byName bool
	// rollout: spec.rolloutRef, judged by its phase rather than kstatus.
	rollout bool
	// before: what the Rollout said as this sync's write left it (nil if
	// the sync did not write it).
	before *v1alpha1.RolloutStatus
}

func (t healthTarget) String() string {
	if t.namespace == "" {
		return t.gvk.Kind + " " + t.name
	}
	return t.gvk.Kind + " " + t.namespace + "/" + t.name
}

// followedTargets are what a sync's wait follows: with spec.wait the
// applied objects and spec.healthChecks, and with spec.rolloutRef the
// Rollout; sorted.
func followedTargets(repo *v1alpha1.GitRepository, applied []apply.Entry, rolloutBefore *v1alpha1.RolloutStatus) []healthTarget {
	var targets []healthTarget
	rollout := newRolloutWrites(repo)
	if repo.Spec.Wait {
		for _, e := range applied {
			if rollout != nil && rollout.is(e, targetNamespace(repo)) {
				continue // judged by its phase below, not by kstatus (Argo's observedGeneration is a string)
			}
			targets = append(targets, healthTarget{gvk: e.GroupVersionKind(),
				namespace: e.Namespace, name: e.Name})
		}
		for _, c := range repo.Spec.HealthChecks {
			gv, _ := schema.ParseGroupVersion(c.APIVersion)
			namespace := c.Namespace
			if namespace == "" {
				namespace = targetNamespace(repo)
			}
			targets = append(targets, healthTarget{gvk: gv.WithKind(c.Kind), namespace: namespace, name: c.Name, byName: true})
		}
	}
	if ref := repo.Spec.RolloutRef; ref != nil {
		gv, _ := schema.ParseGroupVersion(ref.APIVersion)
		targets = append(targets, healthTarget{gvk: gv.WithKind(ref.Kind), namespace: targetNamespace(repo), name: ref.Name,
			byName: true, rollout: true, before: rolloutBefore})
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].String() < targets[j].String() })
	return targets
}

// following: a sync that applies is followed by a wait.
func following(repo *v1alpha1.GitRepository) bool {
	return repo.Spec.Wait || repo.Spec.RolloutRef != nil
}

func healthTimeout(repo *v1alpha1.GitRepository) time.Duration {
	for _, d := range []string{repo.Spec.HealthTimeout, repo.Spec.Timeout} {
		if t, err := time.ParseDuration(d); err == nil && t > 0 {
			return t
		}
	}
	return time.Minute
}

// startHealthWait begins waiting, after a sync applied commit, for the
// GitRepository's objects to be healthy (spec.wait) and its Rollout to
// complete (spec.rolloutRef), and writes the outcome into the Healthy,
// RolledOut and Ready conditions; the worker goes on at once.
func (r *Reconciler) startHealthWait(parent context.Context, repo *v1alpha1.GitRepository, commit string, applied []apply.Entry,
	rolloutBefore *v1alpha1.RolloutStatus, kinds kindMapperOf) {
	key := repo.Namespace + "/" + repo.Name
	targets := followedTargets(repo, applied, rolloutBefore)
	timeout := healthTimeout(repo)
	r.health.start(parent, key, func(ctx context.Context, current func() bool) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		seen := func(rollout v1alpha1.RolloutStatus, pickedUp bool) {
			r.reportRollout(parent, repo, commit, current, rollout, pickedUp)
		}
		w := r.waitForHealth(ctx, repo, targets, seen, kinds)
		if parent.Err() != nil || ctx.Err() == context.Canceled {
			return // a newer sync, a deletion or the end of this term
		}
		r.reportHealth(parent, repo, commit, current, len(targets), w, timeout)
	})
}

// recheckHealth waits again, at an idle round, for what a wait left
// unhealthy (a rollout that took longer turns Ready without a new commit),
// or for what a lost wait left pending.
func (r *Reconciler) recheckHealth(ctx context.Context, repo *v1alpha1.GitRepository) {
	key := repo.Namespace + "/" + repo.Name
	// Unknown too: a wait is kept in memory only, and a restart or a new
	// leader lost it.
	h := apimeta.FindStatusCondition(repo.Status.Conditions, v1alpha1.ConditionHealthy)
	unsettled := repo.Spec.Wait && h != nil && h.Status != metav1.ConditionTrue
	if rolled := apimeta.FindStatusCondition(repo.Status.Conditions, v1alpha1.ConditionRolledOut); repo.Spec.RolloutRef != nil &&
		rolled != nil && rolled.Status == metav1.ConditionUnknown {
		unsettled = true // a lost wait: a Rollout still to follow
	}
	if !unsettled || r.health.active(key) || repo.Status.Phase != v1alpha1.PhaseSynced {
		return
	}
	r.startHealthWait(ctx, repo, repo.Status.LastSyncedCommit, fromInventory(repo.Status.Inventory), unpickedUp(&repo.Status),
		(*apply.Applier).IdleKindMapper) // at every idle round while unhealthy
}

// kindMapperOf picks how a health wait maps kinds: (*apply.Applier).KindMapper
// after a sync, IdleKindMapper for a recheck at an idle round.
type kindMapperOf func(*apply.Applier) *apply.KindMapper

// waitForHealth watches targets, with the GitRepository's identity, until
// each is Current by kstatus rules (the Rollout: completed), the Rollout
// fails, or ctx ends; the returned watch holds what was not healthy then,
// with why, and what was seen of the Rollout. Applied objects are watched
// per resource and namespace by our label, spec.healthChecks and the
// Rollout each by name; seen is told the Rollout's progress.
func (r *Reconciler) waitForHealth(ctx context.Context, repo *v1alpha1.GitRepository, targets []healthTarget,
	seen func(rollout v1alpha1.RolloutStatus, pickedUp bool), kindMapper kindMapperOf) *healthWatch {
	w := &healthWatch{changed: make(chan struct{}, 1), scopeOf: map[healthTarget]watchScope{}, keyOf: map[healthTarget]string{},
		stores: map[watchScope]cache.Store{}, errors: map[watchScope]string{}}
	applier, err := r.Appliers.For(repo.Namespace, repo.Spec.ServiceAccountName)
	if err != nil {
		w.missing = []string{"cannot watch: " + err.Error()}
		return w
	}
	owner := labels.Set{apply.LabelName: repo.Name, apply.LabelNamespace: repo.Namespace}.String()
	mappings := map[healthTarget]*apimeta.RESTMapping{}
	namespacesOf := map[schema.GroupVersionResource]map[string]bool{}
	kinds := kindMapper(applier)
	for _, t := range targets {
		mapping, err := kinds.Mapping(t.gvk)
		if err != nil {
			if t.rollout {
				w.missing = append(w.missing, w.rolloutMissing(t, "its kind is not served (is the Rollout CRD installed?)"))
				continue
			}
			w.missing = append(w.missing, fmt.Sprintf("%s: %v", t, err))
			continue
		}
		mappings[t] = mapping
		if namespacesOf[mapping.Resource] == nil {
			namespacesOf[mapping.Resource] = map[string]bool{}
		}
		namespacesOf[mapping.Resource][t.namespace] = true
	}
	var synced []cache.InformerSynced
	for _, t := range targets {
		mapping, ok := mappings[t]
		if !ok {
			continue
		}
		scope := watchScope{resource: mapping.Resource, namespace: t.namespace}
		// One watch per namespace, or one for all of them past a few.
		if mapping.Scope.Name() == apimeta.RESTScopeNameRoot || len(namespacesOf[mapping.Resource]) > maxWatchedNamespaces {
			scope.namespace = ""
		}
		if t.byName {
			scope.name = t.name // someone else's: watched by name, not by our label
		}
		w.scopeOf[t] = scope
		w.keyOf[t] = t.namespace + "/" + t.name
		if mapping.Scope.Name() == apimeta.RESTScopeNameRoot {
			w.keyOf[t] = t.name
		}
		if _, ok := w.stores[scope]; ok {
			continue
		}
		selector := func(o *metav1.ListOptions) { o.LabelSelector = owner }
		if scope.name != "" {
			selector = func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", scope.name).String()
			}
		}
		informer := cache.NewSharedIndexInformer(w.listWatch(applier.Client, scope, selector),
			&unstructured.Unstructured{}, 0, cache.Indexers{})
		_ = informer.SetTransform(shrinkForHealth)
		_ = informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) { w.failed(ctx, scope, err) })
		_, _ = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { w.notify() },
			UpdateFunc: func(any, any) { w.notify() },
			DeleteFunc: func(any) { w.notify() },
		})
		w.stores[scope] = informer.GetStore()
		synced = append(synced, informer.HasSynced)
		go informer.RunWithContext(ctx)
	}
	cache.WaitForCacheSync(ctx.Done(), synced...)
	var shownAt time.Time
	for {
		// Each pass judges every target; events arrive as fast as whoever
		// may write the watched objects writes. Passes are spaced so that
		// judging takes at most a tenth of a core, however hard they write.
		started := time.Now()
		w.unhealthyNow = w.unhealthy(targets)
		rest := time.After(judgeSpacing * time.Since(started))
		// The Rollout's progress shows at most every rolloutShowEvery: its
		// status is whoever-writes-it's, and each change is a write here.
		var later <-chan time.Time
		if w.rollout != nil && !apiequality.Semantic.DeepEqual(w.rollout, w.rolloutShown) {
			if wait := rolloutShowEvery - time.Since(shownAt); wait > 0 {
				later = time.After(wait)
			} else {
				shown := *w.rollout
				w.rolloutShown, shownAt = &shown, time.Now()
				seen(shown, w.rolloutPickedUp)
			}
		}
		if len(w.unhealthyNow) == 0 || w.rolloutFailed() || ctx.Err() != nil {
			return w
		}
		select {
		case <-ctx.Done():
		case <-w.changed:
		case <-later:
		}
		select {
		case <-ctx.Done():
		case <-rest:
		}
	}
}

// judgeSpacing: a wait rests this many times as long as a pass took before
// the next one.
const judgeSpacing = 9

// rolloutShowEvery bounds how often a wait writes a Rollout's progress.
const rolloutShowEvery = 5 * time.Second

// maxWatchedNamespaces: past this many namespaces of one resource, a wait
// watches it in all namespaces at once (by our label) rather than open a
// watch per namespace.
const maxWatchedNamespaces = 8

// shrinkForHealth keeps of a watched object what kstatus reads (kind, name,
// generation, deletion, spec and status) and drops the rest (data,
// annotations, managedFields): a ConfigMap's data or a Secret's never stay
// in memory for a wait.
func shrinkForHealth(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	metadata := map[string]any{"name": u.GetName(), "namespace": u.GetNamespace(), "generation": u.GetGeneration(),
		"resourceVersion": u.GetResourceVersion(), "uid": string(u.GetUID())}
	if deleted := u.GetDeletionTimestamp(); deleted != nil {
		metadata["deletionTimestamp"] = deleted.UTC().Format(time.RFC3339)
	}
	kept := map[string]any{"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(), "metadata": metadata}
	for _, field := range []string{"spec", "status"} {
		if v, ok := u.Object[field]; ok {
			kept[field] = v
		}
	}
	return &unstructured.Unstructured{Object: kept}, nil
}

// watchScope is one watch: a resource in a namespace ("" for all, or a
// cluster-scoped resource), by our label, or one object by name.
type watchScope struct {
	resource  schema.GroupVersionResource
	namespace string
	name      string
}

// healthWatch is what one wait's watches have seen.
type healthWatch struct {
	changed chan struct{}
	scopeOf map[healthTarget]watchScope
	keyOf   map[healthTarget]string // the target's key in its store
	stores  map[watchScope]cache.Store
	missing []string // targets that could not be watched at all
	mu      sync.Mutex
	errors  map[watchScope]string // the last list or watch error of each
	// unhealthyNow says, when the wait ended, what was not healthy and why.
	unhealthyNow []string
	// rollout is what was last seen of spec.rolloutRef's Rollout, its
	// verdict, and what the status shows of it.
	rollout      *v1alpha1.RolloutStatus
	verdict      rolloutVerdict
	rolloutShown *v1alpha1.RolloutStatus
	// rolloutPickedUp: its status was seen to speak of this sync's write.
	rolloutPickedUp bool
}

func (w *healthWatch) notify() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// failed keeps err as scope's last list or watch error, unless it came of
// the wait's end (ctx done), which would hide the error it ended with.
func (w *healthWatch) failed(ctx context.Context, scope watchScope, err error) {
	if ctx.Err() != nil {
		return
	}
	// A server's error text, bounded: judge repeats it for each target.
	why := shorten(err.Error(), maxWatchErrorBytes, "…")
	w.mu.Lock()
	w.errors[scope] = why
	w.mu.Unlock()
	w.notify()
}

// maxWatchErrorBytes bounds the error kept for each watch.
const maxWatchErrorBytes = 512

// served forgets scope's error once a list or watch of it is answered: what
// its store shows is current again.
func (w *healthWatch) served(scope watchScope) {
	w.mu.Lock()
	delete(w.errors, scope)
	w.mu.Unlock()
}

// listWatch lists and watches scope with client, noting each refusal as it
// is answered (client must be an applier's, whose transport tells
// withRefusalNote's note). client-go retries a refused watch (429, as
// alumiini's API answers a user at its watch cap) without reporting it, so
// without the note a wait whose watch never started would say its targets
// were "not found". It does what dynamicinformer's list-watch does, which
// gives its option tweak no context to carry the note.
func (w *healthWatch) listWatch(client dynamic.Interface, scope watchScope, selector func(*metav1.ListOptions)) cache.ListerWatcher {
	resource := client.Resource(scope.resource).Namespace(scope.namespace)
	refusalNote := func(ctx context.Context) context.Context {
		return withRefusalNote(ctx, func(err error) { w.failed(ctx, scope, err) })
	}
	// outcome records how a call ended. The watch error handler never hears
	// of a failed watch (a reflector retries it): this does. A 429 that
	// client-go gave up retrying was noted, with its label, as it came.
	outcome := func(ctx context.Context, err error) {
		switch {
		case err == nil:
			w.served(scope)
		case !apierrors.IsTooManyRequests(err):
			w.failed(ctx, scope, err)
		}
	}
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			selector(&o)
			list, err := resource.List(refusalNote(ctx), o)
			outcome(ctx, err)
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			selector(&o)
			watcher, err := resource.Watch(refusalNote(ctx), o)
			outcome(ctx, err)
			return watcher, err
		},
	}, client)
}

// unhealthy says, for each target not Current, why: kstatus's status and
// message, not found, or its watch's error.
func (w *healthWatch) unhealthy(targets []healthTarget) []string {
	out := append([]string(nil), w.missing...)
	for _, t := range targets {
		if scope, ok := w.scopeOf[t]; ok {
			if why := w.judge(scope, t); why != "" {
				out = append(out, why)
			}
		}
	}
	return out
}

func (w *healthWatch) judge(scope watchScope, t healthTarget) string {
	w.mu.Lock()
	watchErr := w.errors[scope]
	w.mu.Unlock()
	obj, exists, _ := w.stores[scope].GetByKey(w.keyOf[t])
	if !exists {
		why := "not found"
		if watchErr != "" {
			why = "cannot watch: " + watchErr
		}
		if t.rollout {
			return w.rolloutMissing(t, why)
		}
		return fmt.Sprintf("%s: %s", t, why)
	}
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return ""
	}
	if t.rollout {
		return w.judgeRollout(t, u)
	}
	result, err := status.Compute(u)
	if err != nil {
		return fmt.Sprintf("%s: %v", t, err)
	}
	if result.Status == status.CurrentStatus {
		return ""
	}
	// The message quotes the object's status, which its writer chose.
	why := brief(fmt.Sprintf("%s: %s: %s", t, result.Status, result.Message))
	if watchErr != "" {
		// What was seen may be stale: say why no change is coming.
		why += " (cannot watch: " + watchErr + ")"
	}
	return why
}

// reportHealth writes the wait's outcome, unless a newer commit was synced
// meanwhile.
func (r *Reconciler) reportHealth(ctx context.Context, repo *v1alpha1.GitRepository, commit string, current func() bool,
	waited int, w *healthWatch, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, statusWriteTimeout)
	defer cancel()
	unhealthy := w.unhealthyNow
	// What the status said before: a re-check that finds the same tells
	// no one again.
	var wrote bool
	var before, beforeRollout metav1.Condition
	err := r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		if !current() || s.LastSyncedCommit != commit || s.ObservedGeneration != generation || s.Phase != v1alpha1.PhaseSynced {
			return
		}
		wrote = true
		if c := apimeta.FindStatusCondition(s.Conditions, v1alpha1.ConditionHealthy); c != nil {
			before = *c
		}
		if c := apimeta.FindStatusCondition(s.Conditions, v1alpha1.ConditionRolledOut); c != nil {
			beforeRollout = *c
		}
		if repo.Spec.RolloutRef != nil {
			s.Rollout = w.rollout
			markRolledOut(s, generation, w.verdict.outcome(timeout))
		}
		switch {
		case !repo.Spec.Wait:
		case len(unhealthy) == 0:
			markHealthy(s, generation, fmt.Sprintf("%d objects of commit %s are healthy", waited, short(commit)))
		case w.rolloutFailed():
			markUnhealthy(s, generation, w.verdict.reason, withFix(w.verdict.reason, fmt.Sprintf("%d of %d objects of commit %s are not healthy: %s",
				len(unhealthy), waited, short(commit), strings.Join(capList(unhealthy, 10), "; ")), maxMessageBytes))
		default:
			markUnhealthy(s, generation, ReasonHealthTimeout, withFix(ReasonHealthTimeout, fmt.Sprintf("after %s, %d of %d objects of commit %s are not healthy: %s",
				timeout, len(unhealthy), waited, short(commit), strings.Join(capList(unhealthy, 10), "; ")), maxMessageBytes))
		}
	})
	if err != nil {
		klog.FromContext(withCommit(ctx, commit)).Error(err, "Writing status")
		return
	}
	if !wrote {
		return
	}
	if w.verdict.reason == ReasonRolledBack && beforeRollout.Reason != ReasonRolledBack {
		r.emit(repo, cdevents.ServiceRolledBack, commit, w.verdict.message)
	}
	if len(unhealthy) > 0 && repo.Spec.Wait && before.Status != metav1.ConditionFalse {
		reason := ReasonHealthTimeout
		if w.rolloutFailed() {
			reason = w.verdict.reason
		}
		r.Recorder.Event(repo, "Warning", reason, withFix(reason, strings.Join(unhealthy, "; "), eventMessageBytes))
	}
}

// entryNames names inventory entries as kubectl would.
func entryNames(entries []apply.Entry) []string {
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		t := healthTarget{gvk: e.GroupVersionKind(), namespace: e.Namespace, name: e.Name}
		names = append(names, t.String())
	}
	return names
}

func capList(items []string, n int) []string {
	if len(items) <= n {
		return items
	}
	return append(append([]string(nil), items[:n]...), fmt.Sprintf("and %d more", len(items)-n))
}

// healthConditions keeps the Healthy condition in step with spec.wait: with
// it, Ready follows Healthy; without it, Healthy is dropped.
func healthConditions(s *v1alpha1.GitRepositoryStatus, generation int64, wait bool) {
	if !wait {
		apimeta.RemoveStatusCondition(&s.Conditions, v1alpha1.ConditionHealthy)
		return
	}
	h := apimeta.FindStatusCondition(s.Conditions, v1alpha1.ConditionHealthy)
	if h == nil {
		return
	}
	switch h.Status {
	case metav1.ConditionUnknown:
		markHealthPending(s, generation, h.Message)
	case metav1.ConditionFalse:
		markUnhealthy(s, generation, h.Reason, h.Message)
	}
}
