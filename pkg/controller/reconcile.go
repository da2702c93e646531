package controller

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	pathpkg "path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/apply"
	"github.com/falsesystems/alumiini/pkg/cdevents"
	clientset "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned"
	listers "github.com/falsesystems/alumiini/pkg/generated/listers/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/git"
	"github.com/falsesystems/alumiini/pkg/manifest"
	"github.com/falsesystems/alumiini/pkg/secrets"
	"github.com/falsesystems/alumiini/pkg/slots"
)

// FinalizerPrune makes deleting a GitRepository with prune: true delete what
// it applied first.
const FinalizerPrune = alumiini.FinalizerPrune

// statusWriteTimeout bounds writing a sync's outcome, separately from the
// sync's own timeout.
const statusWriteTimeout = 30 * time.Second

// DefaultMaxObjects bounds the objects one GitRepository applies. Its
// inventory is kept in status, within etcd's request size limit.
const DefaultMaxObjects = 5000

// maxInventoryBytes keeps the inventory's share of the status well inside
// etcd's 1.5 MiB request limit, so a status write never fails after an apply.
const maxInventoryBytes = 1 << 20

// Condition reasons besides the git and apply ones.
const (
	ReasonSucceeded      = "Succeeded"
	ReasonProgressing    = "Progressing"
	ReasonSuspended      = "Suspended"
	ReasonSecretNotFound = "SecretNotFound"
	ReasonRenderFailed   = "RenderFailed"
	ReasonWorkerCrashed  = "WorkerCrashLoop"
	// ReasonDrifted: the commit was applied, but objects differ from it now.
	ReasonDrifted = "Drifted"
	// ReasonEmptyRender: the commit renders no object, which would prune
	// everything, and the path does not say it is meant to be empty.
	ReasonEmptyRender = "EmptyRender"
)

// Appliers hands out an applier for the controller's own identity or, with
// serviceAccountName, for that ServiceAccount.
type Appliers interface {
	For(namespace, serviceAccount string) (*apply.Applier, error)
}

// RenderFunc turns the files of a path of a commit into objects (manifest.Render).
type RenderFunc func(ctx context.Context, dir string, read manifest.ReadFunc, opts ...manifest.Option) ([]manifest.Object, error)

// Reconciler syncs one GitRepository per call.
type Reconciler struct {
	Client   clientset.Interface
	Lister   listers.GitRepositoryLister
	Kube     kubernetes.Interface
	Git      *git.Cache
	Appliers Appliers
	Recorder record.EventRecorder
	// ApplySlots bounds applies across all workers, and per namespace so one
	// tenant's slow applies cannot hold them all.
	ApplySlots *slots.Slots
	// Render is manifest.Render; tests replace it.
	Render RenderFunc
	// MaxObjects bounds the objects of one GitRepository (DefaultMaxObjects if 0).
	MaxObjects int
	// Kustomize builds kustomizations (in a bounded child process); nil
	// builds them in this process.
	Kustomize manifest.KustomizeFunc
	// Events tells the delivery pipeline (CDEvents); nil tells no one.
	Events EventSink
	// Secrets reads spec.secretRef from watches; nil reads with a GET.
	Secrets *secrets.Cache
	// Owner, with --share-work, is this process's identity: it syncs and
	// writes the status of only the GitRepositories whose status.owner
	// names it.
	Owner string
	// drift watches what was applied; nil turns drift handling off.
	drift *driftBook
	// health runs the health waits of spec.wait.
	health healthWaits
	// stop ends syncs as the process stops, but lets those writing finish.
	stop *stopGate

	failures sync.Map // key → consecutive failures, for retry backoff
	pushes   sync.Map // key → v1alpha1.PushRecord not yet in the status
	// driftWakes holds the keys the drift watch woke, and listedAt when each
	// GitRepository last listed its remote.
	driftWakes sync.Map
	listedAt   sync.Map
}

var commitPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)

// Sync brings one GitRepository up to date and says when to look again.
func (r *Reconciler) Sync(ctx context.Context, key string) time.Duration {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return time.Hour
	}
	if r.stop.begun() {
		return time.Hour // the process is stopping; the next one syncs
	}
	ctx = klog.NewContext(ctx, repoLogger(ctx, key))
	repo, err := r.Lister.GitRepositories(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return time.Hour // deleted; the controller stops this worker
	}
	if err != nil {
		return 5 * time.Second
	}
	if r.Owner != "" && repo.Status.Owner != r.Owner {
		return time.Hour // another replica's now; ownership stops this worker
	}
	series.showReady(repo) // the status as stored, after a restart or a hand-over too
	interval := interval(repo)
	if repo.DeletionTimestamp != nil {
		return r.finalize(ctx, repo)
	}
	if err := r.ensureFinalizer(ctx, repo); err != nil {
		klog.FromContext(ctx).Error(err, "Updating finalizers")
		return 5 * time.Second
	}
	if repo.Spec.Suspend {
		r.suspend(ctx, repo)
		return interval
	}
	if reason, message := r.blockedByDependencies(repo); reason != "" {
		// Woken when a dependency turns Ready (Controller.workerHandlers).
		r.waitForDependencies(ctx, repo, reason, message)
		return interval
	}
	if ok := r.syncOnce(ctx, repo); ok {
		r.failures.Delete(key)
		return r.next(key, repo.Spec.URL, interval)
	}
	// Failures retry sooner than the interval, backing off from 5s, each
	// up to a fifth later, so that GitRepositories failing together (one
	// server down) do not retry in lockstep.
	n, _ := r.failures.LoadOrStore(key, 0)
	count := n.(int) + 1
	r.failures.Store(key, count)
	return min(interval, wait.Jitter(time.Duration(5<<min(count-1, 10))*time.Second, 0.2))
}

// pollAt is when a GitRepository that listed url at from lists it again:
// the first instant of url's poll grid at least half an interval after
// from. The grid's instants are interval apart, offset by a hash of url
// (as git folds its spellings) salted per process, so the GitRepositories
// of one URL and interval poll together and share one ref listing,
// whenever each last synced, while different URLs are spread over the
// interval and nobody outside can tell when a URL is polled. Between two
// polls lie half an interval to one and a half, an interval on average.
func pollAt(url string, interval time.Duration, from time.Time) time.Time {
	h := fnv.New64a()
	h.Write(pollSalt[:])
	h.Write([]byte(git.NormalizeURL(url)))
	offset := int64(h.Sum64() % uint64(interval))
	earliest := from.Add(interval / 2).UnixNano()
	steps := (earliest - offset) / int64(interval)
	at := steps*int64(interval) + offset
	for at <= earliest {
		at += int64(interval)
	}
	return time.Unix(0, at)
}

var pollSalt = func() (salt [8]byte) {
	_, _ = rand.Read(salt[:])
	return salt
}()

func interval(repo *v1alpha1.GitRepository) time.Duration {
	d, _ := time.ParseDuration(repo.Spec.Interval)
	if d <= 0 {
		return 5 * time.Minute
	}
	return d
}

// next says when a worker that synced looks again: at its URL's next poll
// an interval after it last listed the remote (syncs the drift watch woke
// do not list), or when a held-back drift correction falls due.
func (r *Reconciler) next(key, url string, interval time.Duration) time.Duration {
	from := time.Now()
	if listed, ok := r.listedAt.Load(key); ok {
		from = listed.(time.Time)
	}
	next := max(time.Until(pollAt(url, interval, from)), 100*time.Millisecond)
	if r.drift == nil {
		return next
	}
	if due := r.drift.next(key); !due.IsZero() {
		next = min(next, max(time.Until(due), 100*time.Millisecond))
	}
	return next
}

// WokenByDrift notes that the drift watch woke key's worker, so its sync
// may skip listing the remote.
func (r *Reconciler) WokenByDrift(key string) { r.driftWakes.Store(key, struct{}{}) }

// Forget drops what the reconciler keeps about a deleted GitRepository.
func (r *Reconciler) Forget(key string) {
	series.drop(key)
	r.failures.Delete(key)
	r.pushes.Delete(key)
	r.driftWakes.Delete(key)
	r.listedAt.Delete(key)
	r.health.stop(key)
	if r.drift != nil {
		r.drift.forget(key)
	}
}

// NotePush records a push webhook for key, shown in its status by the sync
// it triggers, and makes that sync list the remote afresh.
func (r *Reconciler) NotePush(key string, push v1alpha1.PushRecord) { r.pushes.Store(key, push) }

func (r *Reconciler) pendingPush(key string) *v1alpha1.PushRecord {
	if v, ok := r.pushes.Load(key); ok {
		push := v.(v1alpha1.PushRecord)
		return &push
	}
	return nil
}

// pushShown forgets a push once the status shows it, unless a newer one came.
func (r *Reconciler) pushShown(key string, push *v1alpha1.PushRecord) {
	if push != nil {
		r.pushes.CompareAndDelete(key, *push)
	}
}

// syncOnce runs one sync through the stages of DESIGN.md's pipeline
// (resolve, fetch, render, apply, report) and reports success. A stop ends
// it, unless it has begun writing objects: then it finishes, its outcome
// written, while the stop waits (stopGate).
func (r *Reconciler) syncOnce(ctx context.Context, repo *v1alpha1.GitRepository) bool {
	start := time.Now()
	timeout, _ := time.ParseDuration(repo.Spec.Timeout)
	if timeout <= 0 {
		timeout = time.Minute
	}
	workerCtx := ctx // health waits end with the worker, not with the sync
	ctx, guard := r.stop.guard(ctx)
	defer guard.end()

	key := repo.Namespace + "/" + repo.Name
	repo = repo.DeepCopy() // the sync's own copy: markSyncing updates it
	if !r.beginRequest(ctx, repo) {
		return false
	}
	pending := repo.Status.PendingSyncRequest
	push := r.pendingPush(key)
	out, err := r.run(ctx, guard, timeout, repo, pending, push)
	if guard.endedByStop() { // it wrote nothing; the next process syncs again
		klog.FromContext(ctx).V(2).Info("The stop ended a sync before it wrote", "err", err)
		return false
	}
	// The outcome is written even when the sync used up its own time (a
	// timeout is an outcome too), within a bound of its own.
	ctx, cancelWrite := context.WithTimeout(ctx, statusWriteTimeout)
	defer cancelWrite()
	var stage *stageError
	failure := ""
	switch {
	case errors.As(err, &stage):
		failure = stage.reason
	case err != nil: // every stage names its failure; this is only a guard
		failure = reasonOf(err)
	}
	ctx = withCommit(ctx, commitOf(repo, out, err, stage))
	logOutcome(ctx, out, err, failure, start)
	succeeded := func() { series.synced(repo) }
	switch {
	case err != nil:
		countSync(resultFailed, failure, start)
		commit, message := "", err.Error()
		var inventory *v1alpha1.Inventory
		if stage != nil {
			commit, message, inventory = stage.commit, stage.Error(), stage.inventory
		}
		return r.fail(ctx, repo, pending, push, failure, failedSync{commit, message, inventory}, start)
	case out == nil: // idle: nothing new, nothing asked, nothing drifted
		countSync(resultIdle, ReasonSucceeded, start)
		succeeded()
		r.recheckHealth(workerCtx, repo)
		return r.showPush(ctx, repo, push)
	case out.upToDate:
		countSync(resultIdle, ReasonSucceeded, start)
		succeeded()
		return r.answerUpToDate(ctx, repo, pending, out.commit, start)
	case out.driftOnly:
		countSync(resultDrift, ReasonSucceeded, start)
		succeeded()
		return r.reportDrift(ctx, repo, push, out, start)
	}
	countSync(resultSynced, ReasonSucceeded, start)
	countObjects(out.result)
	succeeded()
	if !r.report(ctx, repo, pending, push, out, start) {
		return false
	}
	if following(repo) {
		r.startHealthWait(workerCtx, repo, out.commit, vouchedFor(out.result), out.rollout, (*apply.Applier).KindMapper)
	}
	return true
}

// vouchedFor is what the apply put in the cluster for git: held objects are
// not git's to vouch for.
func vouchedFor(result *apply.Result) []apply.Entry {
	return slices.DeleteFunc(slices.Clone(result.Inventory), func(e apply.Entry) bool { return slices.Contains(result.Held, e) })
}

func countSync(result, reason string, start time.Time) {
	syncsTotal.WithLabelValues(result, reason).Inc()
	syncDuration.WithLabelValues(result).Observe(time.Since(start).Seconds())
}

func countObjects(result *apply.Result) {
	for action, n := range map[apply.Action]int{apply.Created: result.Created, apply.Configured: result.Configured,
		apply.Unchanged: result.Unchanged, apply.Pruned: result.Pruned} {
		objectsApplied.WithLabelValues(string(action)).Add(float64(n))
	}
}

// outcome is what a sync that did something did.
type outcome struct {
	commit string
	// upToDate: a push another replica handed over found the commit
	// applied already; only the request is answered.
	upToDate bool
	result   *apply.Result
	// driftOnly: the commit was applied already; only objects the drift
	// watch suspected were compared and, by policy, corrected.
	driftOnly bool
	drift     *driftSync
	// rollout: what spec.rolloutRef's Rollout said as the apply wrote it,
	// nil if it did not write it.
	rollout *v1alpha1.RolloutStatus
}

// stageError is a stage's failure: the condition reason, and the commit the
// sync had got to, if any.
type stageError struct {
	reason, commit string
	err            error
	// inventory, if set, replaces the stored one: the apply wrote
	// objects before it failed.
	inventory *v1alpha1.Inventory
}

func (e *stageError) Error() string { return e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

func failed(reason, commit string, err error) *stageError {
	return &stageError{reason: reason, commit: commit, err: err}
}

// run takes the stages in order; a nil outcome with no error means idle.
//
// timeout bounds the fetch and render, and then the apply, each; the wait
// for an apply slot does not count. When many GitRepositories sync at once
// (a restart, a push to a monorepo) they queue for slots, and a sync whose
// time ran out in the queue would have fetched and rendered for nothing,
// only to queue again.
//
// guarded is the sync's context, which a stop ends until guard says the
// apply began writing.
func (r *Reconciler) run(guarded context.Context, guard *syncStop, timeout time.Duration, repo *v1alpha1.GitRepository,
	pending *v1alpha1.SyncRequestRecord, push *v1alpha1.PushRecord) (*outcome, error) {
	ctx, cancel := context.WithTimeout(guarded, timeout)
	defer cancel()
	key := repo.Namespace + "/" + repo.Name
	src, err := r.resolve(ctx, repo, pending)
	if err != nil {
		return nil, err
	}
	commit, err := r.commitToSync(ctx, key, repo, pending, push, src)
	if err != nil {
		return nil, err
	}
	ctx = withCommit(ctx, commit)
	if handedOverPush(pending) && r.upToDate(repo, nil, commit) && !r.driftSuspected(ctx, key, repo) {
		return &outcome{commit: commit, upToDate: true}, nil
	}
	var suspects map[manifest.ID]bool
	if r.upToDate(repo, pending, commit) {
		if r.drift == nil || driftMode(repo) == v1alpha1.DriftIgnore {
			return nil, nil
		}
		if suspects = r.drift.suspects(ctx, key, repo); len(suspects) == 0 {
			return nil, nil
		}
	}
	objects, err := r.renderCommit(ctx, repo, src, commit)
	if err != nil {
		return nil, err
	}
	out := &outcome{commit: commit, driftOnly: suspects != nil}
	if !out.driftOnly {
		r.health.stop(key) // this apply's own wait follows it
	}
	out.drift = r.driftPolicy(ctx, repo, src, commit, objects, suspects)
	force := pending != nil && pending.Force
	err = r.apply(withCommit(guarded, commit), guard, timeout, repo, objects, force, out)
	if err == nil && r.drift != nil {
		// After the apply slot is released; not bounded by the fetch's
		// time. A new watch's first list may take watchListWait, which the
		// stop's wait for syncs writing (5 s) cannot spare for a watch that
		// ends with the process.
		watching, stopWatching := r.stop.orStop(guarded)
		r.drift.watch(watching, out.result.Inventory)
		stopWatching()
	}
	return out, err
}

// syncingShownAfter: an apply still running this long after it got its
// slot shows phase Syncing; one done sooner costs a single status write,
// its outcome.
const syncingShownAfter = time.Second

// showSyncingAfter writes phase Syncing once the apply has run for after,
// from a copy of repo. The returned func ends that: it waits for a write
// begun, and takes the stored GitRepository it answered into repo, so the
// outcome is written over it; the worker calls it before anything else
// reads or writes repo.
func (r *Reconciler) showSyncingAfter(ctx context.Context, repo *v1alpha1.GitRepository, commit string, objects int,
	after time.Duration) func() {
	copied := repo.DeepCopy()
	stop := make(chan struct{})
	written := make(chan *v1alpha1.GitRepository, 1)
	go func() {
		defer close(written)
		defer logPanic(klog.FromContext(ctx), "Panic while showing a sync in progress; the sync goes on")
		select {
		case <-stop:
			return
		case <-time.After(after):
		}
		if w := r.markSyncing(ctx, copied, commit, objects); w != nil {
			written <- w
		}
	}()
	return func() {
		close(stop)
		// nil when the write failed or panicked; had it landed, the
		// outcome's write meets a conflict and re-reads, as after a newer spec.
		if w := <-written; w != nil && w.Generation == repo.Generation {
			*repo = *w // else the outcome's write re-reads, and keeps the generation applied
		}
	}
}

// markSyncing shows a sync that applies as in progress (phase Syncing,
// Reconciling=True), so kubectl and kstatus tools see it; it returns the
// stored GitRepository, or nil if the write failed (only logged: the sync
// goes on).
func (r *Reconciler) markSyncing(ctx context.Context, repo *v1alpha1.GitRepository, commit string, objects int) *v1alpha1.GitRepository {
	message := fmt.Sprintf("applying commit %s: %d objects", short(commit), objects)
	ctx, cancel := context.WithTimeout(ctx, statusWriteTimeout)
	defer cancel()
	written, err := r.writeStatusOf(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		s.Phase = v1alpha1.PhaseSyncing
		s.LastAttemptedCommit = commit
		markSyncing(s, generation, message)
	})
	if err != nil {
		klog.FromContext(ctx).Error(err, "Writing status")
		return nil
	}
	return written
}

// commitToSync lists the remote for the commit to sync, except when only
// the drift watch woke the worker and the remote was listed within the
// interval: drift is corrected against the commit already applied, at no
// cost to the git server.
func (r *Reconciler) commitToSync(ctx context.Context, key string, repo *v1alpha1.GitRepository,
	pending *v1alpha1.SyncRequestRecord, push *v1alpha1.PushRecord, src git.Source) (string, error) {
	_, driftWake := r.driftWakes.LoadAndDelete(key)
	if listed, ok := r.listedAt.Load(key); ok && driftWake && pending == nil && push == nil &&
		r.upToDate(repo, nil, repo.Status.LastSyncedCommit) && time.Since(listed.(time.Time)) < interval(repo) {
		return repo.Status.LastSyncedCommit, nil
	}
	commit, err := r.latest(ctx, pending, push, src)
	if err == nil {
		r.listedAt.Store(key, time.Now())
	}
	return commit, err
}

// renderCommit reads the path of commit and renders it.
func (r *Reconciler) renderCommit(ctx context.Context, repo *v1alpha1.GitRepository, src git.Source, commit string) ([]manifest.Object, error) {
	tree, err := r.Git.Files(ctx, src, commit, repo.Spec.Path)
	if err != nil {
		return nil, failed(git.Reason(err), commit, err)
	}
	objects, err := r.render(ctx, repo, src, tree)
	if err != nil {
		return nil, err
	}
	if err := refuseEmpty(repo, tree, objects); err != nil {
		return nil, failed(ReasonEmptyRender, commit, err)
	}
	return objects, nil
}

// resolve says what to fetch: the spec's ref, or the pending request's
// revision, with the Secret's credentials.
func (r *Reconciler) resolve(ctx context.Context, repo *v1alpha1.GitRepository, pending *v1alpha1.SyncRequestRecord) (git.Source, error) {
	src := git.Source{URL: repo.Spec.URL, Branch: repo.Spec.Branch, Tag: repo.Spec.Tag, Commit: repo.Spec.Commit,
		Tenant: repo.Namespace}
	if pending != nil {
		switch rev := pending.Revision; {
		case rev == "":
		case commitPattern.MatchString(rev):
			src.Branch, src.Tag, src.Commit = "", "", rev
		default:
			src.Branch, src.Tag, src.Commit = rev, "", ""
		}
	}
	if ref := repo.Spec.SecretRef; ref != nil {
		auth, err := r.auth(ctx, repo.Namespace, ref.Name, repo.Spec.URL)
		if err != nil {
			return src, failed(reasonOf(err), "", err)
		}
		src.Auth = auth
	}
	return src, nil
}

// latest lists the remote (afresh after a push or for a request) for the
// commit to sync.
func (r *Reconciler) latest(ctx context.Context, pending *v1alpha1.SyncRequestRecord, push *v1alpha1.PushRecord, src git.Source) (string, error) {
	switch {
	case pending != nil:
		// A request must see a push made a moment before it (or before an
		// equal request joined it): a listing that started before now
		// will not do.
		src.Since = time.Now()
	case push != nil:
		src.Since = push.ReceivedAt.Time
	}
	commit, err := r.Git.Latest(ctx, src)
	if err != nil {
		return "", failed(git.Reason(err), "", err)
	}
	return commit, nil
}

// upToDate: the remote has nothing new, the spec has not changed, the last
// sync succeeded and nobody asked, so one ref listing was the whole cost
// unless the drift watch suspects something.
func (r *Reconciler) upToDate(repo *v1alpha1.GitRepository, pending *v1alpha1.SyncRequestRecord, commit string) bool {
	st := repo.Status
	return pending == nil && commit == st.LastSyncedCommit && st.ObservedGeneration == repo.Generation &&
		st.Phase == v1alpha1.PhaseSynced && !waitedForDependencies(st)
}

// waitedForDependencies: the status says the last round waited for a
// dependency, so this one, no longer waiting, must sync and say so.
func waitedForDependencies(s v1alpha1.GitRepositoryStatus) bool {
	ready := apimeta.FindStatusCondition(s.Conditions, v1alpha1.ConditionReady)
	return ready != nil && (ready.Reason == ReasonDependencyNotReady || ready.Reason == ReasonDependencyCycle)
}

// render turns the tree into objects and checks they fit what one
// GitRepository may apply.
func (r *Reconciler) render(ctx context.Context, repo *v1alpha1.GitRepository, src git.Source, tree *git.Tree) ([]manifest.Object, error) {
	opts := []manifest.Option{manifest.MaxObjects(r.maxObjects())}
	if r.Kustomize != nil {
		opts = append(opts, manifest.Kustomize(r.Kustomize))
	}
	objects, err := r.Render(ctx, repo.Spec.Path, r.reader(src, tree, repo.Spec.Path), opts...)
	if err != nil {
		reason := ReasonRenderFailed
		var gerr *git.Error
		switch {
		case errors.As(err, &gerr):
			reason = gerr.Reason // e.g. a limit hit while reading the repository for a kustomization
		case errors.Is(err, manifest.ErrTooManyObjects):
			reason = git.ReasonLimitExceeded
		}
		return nil, failed(reason, tree.Commit, err)
	}
	if err := r.checkBounds(objects); err != nil {
		return nil, failed(git.ReasonLimitExceeded, tree.Commit, err)
	}
	return objects, nil
}

// apply puts the objects in the cluster with the GitRepository's identity,
// holding one of the shared apply slots. With a drift policy of a sync of
// suspects (the commit already applied) only those objects are compared and
// nothing is pruned; the policy decides what is written. It sets
// out.result, and out.rollout if the Rollout of spec.rolloutRef was written.
// guard tells a stop when the first write is about to go out.
func (r *Reconciler) apply(ctx context.Context, guard *syncStop, timeout time.Duration, repo *v1alpha1.GitRepository,
	objects []manifest.Object, force bool, out *outcome) error {
	commit, policy := out.commit, out.drift
	applier, err := r.Appliers.For(repo.Namespace, repo.Spec.ServiceAccountName)
	if err != nil {
		return failed(apply.ReasonApplyFailed, commit, err)
	}
	target := targetNamespace(repo)
	previous := fromInventory(repo.Status.Inventory)
	opts := apply.Options{
		DefaultNamespace: target,
		Prune:            repo.Spec.Prune == nil || *repo.Spec.Prune,
		Previous:         previous,
		KeptByGit:        keptByGit(repo.Status.Inventory),
		Force:            force,
		Adopt:            repo.Spec.Adopt,
		Ignore:           ignoreRules(repo),
		BeforeWrites:     guard.beginWrites,
	}
	if policy != nil {
		if !policy.fullSync {
			opts.Prune = false
			objects = slices.DeleteFunc(slices.Clone(objects), func(o manifest.Object) bool {
				return !policy.examined[keyOfObject(o, target)]
			})
		}
		opts.Write = policy.decide
		opts.Observe = r.drift.observe(policy.key, target)
	}
	rollout := newRolloutWrites(repo)
	rollout.hookInto(&opts, target) // must follow the line setting opts.Observe: it wraps it
	waiting := time.Now()
	releaseSlot, err := r.ApplySlots.Acquire(ctx, repo.Namespace) // not the sync's timeout: queueing is not the sync's time
	slotWait.WithLabelValues("apply").Observe(time.Since(waiting).Seconds())
	if err != nil {
		return failed(git.ReasonTimeout, commit, fmt.Errorf("stopped waiting for an apply slot: %w", err))
	}
	release := sync.OnceFunc(releaseSlot)
	defer release()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	endSyncingNote := func() {}
	if !out.driftOnly {
		endSyncingNote = sync.OnceFunc(r.showSyncingAfter(ctx, repo, commit, len(objects), syncingShownAfter))
		defer endSyncingNote()
	}
	result, err := applier.Apply(ctx, applyOwner(repo), objects, opts)
	release() // before waiting for a Syncing write: the next apply may start
	endSyncingNote()
	if err != nil {
		if policy != nil {
			policy.failed()
		}
		stage := failed(reasonOf(err), commit, err)
		if result != nil {
			// Only pruning failed: what was applied, and what could not be
			// deleted, is the inventory now, so the next sync tries again.
			stage.inventory = toInventory(result.Inventory, result.KeptByGit)
		}
		return stage
	}
	if policy != nil {
		inventory := result.Inventory
		if !policy.fullSync {
			inventory = previous
		}
		policy.settle(result, objects, inventory)
	}
	out.result, out.rollout = result, rollout.before(result, target)
	return nil
}

// driftPolicy is this sync's drift policy, nil when drift handling is off.
// With suspects it compares only them; otherwise every object, telling what
// git changed (always written) from drift (written by policy).
func (r *Reconciler) driftPolicy(ctx context.Context, repo *v1alpha1.GitRepository, src git.Source, commit string,
	objects []manifest.Object, suspects map[manifest.ID]bool) *driftSync {
	if r.drift == nil {
		return nil
	}
	key := repo.Namespace + "/" + repo.Name
	target := targetNamespace(repo)
	s := &driftSync{book: r.drift, key: key, target: target, mode: driftMode(repo), grace: gracePeriod(repo),
		now: time.Now(), fullSync: suspects == nil, examined: suspects, notesBefore: r.drift.notesSoFar(key)}
	if !s.fullSync {
		return s
	}
	s.examined = map[manifest.ID]bool{}
	for _, o := range objects {
		s.examined[keyOfObject(o, target)] = true
	}
	var previous []manifest.Object
	if last := repo.Status.LastSyncedCommit; last != "" && r.drift.needsPrevious(key, repo) {
		// Since a restart nothing says what git held before: render the
		// commit last applied, so a drifted object git did not change stays
		// held back. If that fails, git wins.
		if last == commit {
			previous = objects
		} else if rendered, err := r.renderCommit(ctx, repo, src, last); err == nil {
			previous = rendered
		} else {
			klog.FromContext(ctx).V(2).Info("Rendering the last applied commit to tell git's changes from drift", "err", err)
		}
	}
	s.changedInGit = r.drift.changedSince(key, target, objects, previous)
	return s
}

// report writes a successful sync into the status and an Event.
func (r *Reconciler) report(ctx context.Context, repo *v1alpha1.GitRepository, pending *v1alpha1.SyncRequestRecord,
	push *v1alpha1.PushRecord, out *outcome, start time.Time) bool {
	commit, result := out.commit, out.result
	counts := v1alpha1.ObjectCounts{Created: int32(result.Created), Configured: int32(result.Configured),
		Unchanged: int32(result.Unchanged), Pruned: int32(result.Pruned)}
	message := fmt.Sprintf("applied commit %s: %d created, %d configured, %d unchanged, %d pruned",
		short(commit), result.Created, result.Configured, result.Unchanged, result.Pruned)
	if n := len(result.Held); n > 0 {
		message += fmt.Sprintf("; %d held by %s", n, apply.AnnotationSuspendHeal)
	}
	if n := len(result.Released); n > 0 {
		message += fmt.Sprintf("; %d left the repository but kept (%s: disabled, or an adopted Namespace), no longer managed: %s",
			n, apply.AnnotationPrune, strings.Join(capList(entryNames(result.Released), 10), ", "))
	}
	driftStatus := r.driftStatus(repo)
	written, followed := out.rollout, out.rollout
	err := r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		now := metav1.Now()
		s.Phase = v1alpha1.PhaseSynced
		s.ObservedGeneration = generation
		s.LastAttemptedCommit = commit
		s.LastSyncedCommit = commit
		s.LastSyncTime = &now
		s.Message = message
		s.Objects = &counts
		s.Inventory = toInventory(result.Inventory, result.KeptByGit)
		s.Drift = driftStatus
		if push != nil {
			s.LastPush = confirmed(push, commit)
		}
		markSynced(s, generation, message, driftStatus)
		if repo.Spec.Wait {
			markHealthPending(s, generation, fmt.Sprintf("waiting up to %s for %d objects of commit %s to be healthy",
				healthTimeout(repo), len(followedTargets(repo, vouchedFor(result), nil)), short(commit)))
		}
		healthConditions(s, generation, repo.Spec.Wait)
		followed = written
		if followed == nil {
			// Not written by this sync: a revision the last sync wrote and
			// the Rollout has not picked up yet is still the one to follow
			// (a push's sync, then a request's, one after the other), as
			// the status read at this attempt says.
			followed = unpickedUp(s)
		}
		followRolloutAnew(s, generation, repo.Spec.RolloutRef, followed)
		answer(s, pending, v1alpha1.PhaseSynced, commit, message, counts, time.Since(start))
	})
	if err != nil {
		klog.FromContext(ctx).Error(err, "Writing status")
		return false
	}
	out.rollout = followed // what the health wait follows
	r.pushShown(repo.Namespace+"/"+repo.Name, push)
	switch previous := repo.Status.LastSyncedCommit; {
	case previous == "":
		r.emit(repo, cdevents.ServiceDeployed, commit, "")
	case previous != commit:
		r.emit(repo, cdevents.ServiceUpgraded, commit, "")
	}
	if result.Created+result.Configured+result.Pruned+len(result.Released) > 0 || pending != nil {
		r.Recorder.Event(repo, corev1.EventTypeNormal, "Synced", message)
	}
	r.driftEvents(repo, start)
	return true
}

// reportDrift writes what a drift-only sync found and did; the last sync's
// commit, counts and inventory stay as they were.
func (r *Reconciler) reportDrift(ctx context.Context, repo *v1alpha1.GitRepository, push *v1alpha1.PushRecord,
	out *outcome, start time.Time) bool {
	driftStatus := r.driftStatus(repo)
	message := repo.Status.Message
	r.driftEvents(repo, start)
	if push == nil && apiequality.Semantic.DeepEqual(driftStatus, repo.Status.Drift) {
		return true // a re-check that found what the status says already
	}
	err := r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		s.Drift = driftStatus
		if push != nil {
			s.LastPush = confirmed(push, out.commit)
		}
		markSynced(s, generation, message, driftStatus)
		healthConditions(s, generation, repo.Spec.Wait)
	})
	if err != nil {
		klog.FromContext(ctx).Error(err, "Writing status")
		return false
	}
	r.pushShown(repo.Namespace+"/"+repo.Name, push)
	return true
}

// showPush writes a push that found nothing new (a redelivery, or a push to
// a path this GitRepository does not read), so its sender can see it
// arrived; an idle sync with no push writes nothing.
// beginRequest clears the pending request's Rejoined flag before this sync
// lists the remote, so that a request joining from now on sets it again and
// keeps the request pending for one more round (answer). It updates repo,
// the sync's own copy, and reports whether the sync may go on.
func (r *Reconciler) beginRequest(ctx context.Context, repo *v1alpha1.GitRepository) bool {
	pending := repo.Status.PendingSyncRequest
	if pending == nil || !pending.Rejoined {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, statusWriteTimeout)
	defer cancel()
	written, err := r.writeStatusOf(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, _ int64) {
		if p := s.PendingSyncRequest; p != nil && p.ID == pending.ID {
			p.Rejoined = false
		}
	})
	if err != nil {
		klog.FromContext(ctx).Error(err, "Writing status")
		return false
	}
	*repo = *written
	return true
}

// handedOverPush tells a push another replica handed over (recorded by
// alumiini's own loopback identity, with no revision and no force) from a
// user's request: like a push, it only needs a fresh listing when the
// commit is applied already, not a render, dry-run and apply.
func handedOverPush(pending *v1alpha1.SyncRequestRecord) bool {
	return pending != nil && pending.RequestedBy == user.APIServerUser && pending.Revision == "" && !pending.Force
}

// driftSuspected: the drift watch suspects an object of the GitRepository.
func (r *Reconciler) driftSuspected(ctx context.Context, key string, repo *v1alpha1.GitRepository) bool {
	return r.drift != nil && driftMode(repo) != v1alpha1.DriftIgnore && len(r.drift.suspects(ctx, key, repo)) > 0
}

// answerUpToDate answers a handed-over push whose listing found nothing new,
// if the stored status agrees (the informer's copy may lag a failure); it
// reports false otherwise, and the retry syncs in full.
func (r *Reconciler) answerUpToDate(ctx context.Context, repo *v1alpha1.GitRepository, pending *v1alpha1.SyncRequestRecord,
	commit string, start time.Time) bool {
	message := fmt.Sprintf("up to date: commit %s is applied", short(commit))
	agrees := false
	err := r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		if s.Phase != v1alpha1.PhaseSynced || s.LastSyncedCommit != commit || s.ObservedGeneration != generation {
			return
		}
		agrees = true
		answer(s, pending, v1alpha1.PhaseSynced, commit, message, v1alpha1.ObjectCounts{}, time.Since(start))
	})
	if err != nil {
		klog.FromContext(ctx).Error(err, "Writing status")
		return false
	}
	return agrees
}

func (r *Reconciler) showPush(ctx context.Context, repo *v1alpha1.GitRepository, push *v1alpha1.PushRecord) bool {
	if push == nil {
		return true
	}
	err := r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, _ int64) {
		s.LastPush = confirmed(push, repo.Status.LastSyncedCommit)
	})
	if err != nil {
		klog.FromContext(ctx).Error(err, "Writing status")
		return false
	}
	r.pushShown(repo.Namespace+"/"+repo.Name, push)
	return true
}

// confirmed is the push as the status shows it: with its commit only once
// this GitRepository's own listing of the remote saw that commit. A platform
// webhook authorizes every GitRepository on the pushed URL, also one whose
// writer cannot read the repository; the payload's commit must not reach it.
func confirmed(push *v1alpha1.PushRecord, listed string) *v1alpha1.PushRecord {
	shown := *push
	if shown.Commit != listed {
		shown.Commit = ""
	}
	return &shown
}

func (r *Reconciler) driftStatus(repo *v1alpha1.GitRepository) *v1alpha1.DriftStatus {
	if r.drift == nil {
		return nil
	}
	return r.drift.status(repo.Namespace + "/" + repo.Name)
}

func (r *Reconciler) driftEvents(repo *v1alpha1.GitRepository, start time.Time) {
	if r.drift == nil {
		return
	}
	for reason, lines := range r.drift.events(repo.Namespace+"/"+repo.Name, start) {
		kind := corev1.EventTypeWarning
		if reason == ReasonDriftCorrected {
			kind = corev1.EventTypeNormal
		}
		r.Recorder.Event(repo, kind, reason, brief(strings.Join(lines, "; ")))
		if reason == ReasonDriftDetected || reason == ReasonDriftCorrected {
			r.emit(repo, cdevents.Drifted, repo.Status.LastSyncedCommit, reason+": "+brief(strings.Join(lines, "; ")))
		}
	}
}

// reader serves the files of tree's commit to the renderer: the path already
// read, or any other path of the same commit (a kustomization reads the whole
// repository, so overlays reach their bases).
func (r *Reconciler) reader(src git.Source, tree *git.Tree, path string) manifest.ReadFunc {
	alreadyRead := cleanPath(path)
	return func(ctx context.Context, p string) ([]git.File, error) {
		if cleanPath(p) == alreadyRead {
			return tree.Files, nil
		}
		other, err := r.Git.Files(ctx, src, tree.Commit, p)
		if err != nil {
			return nil, err
		}
		return other.Files, nil
	}
}

func cleanPath(p string) string { return strings.Trim(pathpkg.Clean("/"+p), "/") }

// failedSync is what a failed sync got to.
type failedSync struct {
	commit, message string
	// inventory, if set, replaces the stored one.
	inventory *v1alpha1.Inventory
}

// fail records a failed sync: the last good state stays applied and the
// status says why.
func (r *Reconciler) fail(ctx context.Context, repo *v1alpha1.GitRepository, pending *v1alpha1.SyncRequestRecord,
	push *v1alpha1.PushRecord, reason string, f failedSync, start time.Time) bool {
	commit, message := f.commit, withFix(reason, f.message, maxMessageBytes)
	err := r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		if f.inventory != nil {
			s.Inventory = f.inventory
		}
		if push != nil {
			s.LastPush = confirmed(push, commit)
		}
		s.Phase = v1alpha1.PhaseFailed
		s.ObservedGeneration = generation
		if commit != "" {
			s.LastAttemptedCommit = commit
		}
		s.Message = message
		markFailed(s, generation, reason, message)
		answer(s, pending, v1alpha1.PhaseFailed, commit, message, v1alpha1.ObjectCounts{}, time.Since(start))
	})
	if err != nil {
		klog.FromContext(ctx).Error(err, "Writing status")
	} else {
		r.pushShown(repo.Namespace+"/"+repo.Name, push)
	}
	if repo.Status.Message != message || pending != nil {
		r.Recorder.Event(repo, corev1.EventTypeWarning, reason, withFix(reason, f.message, eventMessageBytes))
	}
	return false
}

// Stall marks a GitRepository whose worker keeps crashing.
func (r *Reconciler) Stall(ctx context.Context, key, crash string) {
	message := withFix(ReasonWorkerCrashed, crash, maxMessageBytes)
	namespace, name, _ := cache.SplitMetaNamespaceKey(key)
	repo, err := r.Lister.GitRepositories(namespace).Get(name)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, statusWriteTimeout)
	defer cancel()
	err = r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		s.Phase = v1alpha1.PhaseFailed
		s.Message = message
		markFailed(s, generation, ReasonWorkerCrashed, message)
		answer(s, s.PendingSyncRequest, v1alpha1.PhaseFailed, "", message, v1alpha1.ObjectCounts{}, 0)
	})
	if err != nil {
		// The commit that crashed is unknown here; the one last synced is what
		// the cluster holds.
		klog.FromContext(ctx).Error(err, "Marking a GitRepository stalled", logKeyRepository, klog.KObj(repo),
			"lastSyncedCommit", repo.Status.LastSyncedCommit)
	}
	r.Recorder.Event(repo, corev1.EventTypeWarning, ReasonWorkerCrashed, withFix(ReasonWorkerCrashed, crash, eventMessageBytes))
}

func (r *Reconciler) suspend(ctx context.Context, repo *v1alpha1.GitRepository) {
	r.health.stop(repo.Namespace + "/" + repo.Name)
	if repo.Status.Phase == v1alpha1.PhaseSuspended && repo.Status.PendingSyncRequest == nil &&
		repo.Status.ObservedGeneration == repo.Generation {
		return
	}
	const message = "suspended: spec.suspend is true"
	err := r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		s.Phase = v1alpha1.PhaseSuspended
		s.ObservedGeneration = generation
		s.Message = message
		markSuspended(s, generation, message)
		answer(s, s.PendingSyncRequest, v1alpha1.PhaseFailed, "", message, v1alpha1.ObjectCounts{}, 0)
	})
	if err != nil {
		klog.FromContext(ctx).Error(err, "Writing status")
	}
}

func (r *Reconciler) ensureFinalizer(ctx context.Context, repo *v1alpha1.GitRepository) error {
	prune := repo.Spec.Prune == nil || *repo.Spec.Prune
	if prune == slices.Contains(repo.Finalizers, FinalizerPrune) {
		return nil
	}
	return r.setFinalizer(ctx, repo, prune)
}

// setFinalizer adds or removes the prune finalizer on the freshest copy.
func (r *Reconciler) setFinalizer(ctx context.Context, repo *v1alpha1.GitRepository, present bool) error {
	client := r.Client.AlumiiniV1alpha1().GitRepositories(repo.Namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		current, err := client.Get(ctx, repo.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		current.Finalizers = slices.DeleteFunc(current.Finalizers, func(f string) bool { return f == FinalizerPrune })
		if present {
			current.Finalizers = append(current.Finalizers, FinalizerPrune)
		}
		_, err = client.Update(ctx, current, metav1.UpdateOptions{})
		return err
	})
}

// finalize deletes what a pruning GitRepository applied, then lets it go.
// deleteApplied deletes entries. While the GitRepository's namespace is
// being deleted, an entry its identity may no longer delete (it lost its
// rights, e.g. a RoleBinding, with the namespace) is left, logged, rather
// than hold the namespace Terminating for ever; any other failure is retried.
func (r *Reconciler) deleteApplied(ctx context.Context, applier *apply.Applier, repo *v1alpha1.GitRepository,
	entries []apply.Entry, terminating bool) error {
	owner := applyOwner(repo)
	for {
		_, err := applier.Delete(ctx, owner, entries, keptByGit(repo.Status.Inventory))
		var failed *apply.Error
		if err == nil || !terminating || !apierrors.IsForbidden(err) || !errors.As(err, &failed) || failed.Pruning == nil {
			return err
		}
		klog.FromContext(ctx).Error(err, "The namespace is being deleted and this object may no longer be deleted; leaving it",
			"object", failed.Object)
		left := *failed.Pruning
		entries = slices.DeleteFunc(entries, func(e apply.Entry) bool { return e == left })
	}
}

// namespaceTerminating reports whether namespace is being deleted.
func (r *Reconciler) namespaceTerminating(ctx context.Context, namespace string) bool {
	ns, err := r.Kube.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	return err == nil && ns.DeletionTimestamp != nil
}

// outside keeps the entries that are not in namespace.
func outside(entries []apply.Entry, namespace string) []apply.Entry {
	return slices.DeleteFunc(entries, func(e apply.Entry) bool { return e.Namespace == namespace })
}

func (r *Reconciler) finalize(ctx context.Context, repo *v1alpha1.GitRepository) time.Duration {
	r.health.stop(repo.Namespace + "/" + repo.Name)
	if !slices.Contains(repo.Finalizers, FinalizerPrune) {
		return time.Hour
	}
	if repo.Spec.Prune == nil || *repo.Spec.Prune {
		entries := fromInventory(repo.Status.Inventory)
		terminating := r.namespaceTerminating(ctx, repo.Namespace)
		if terminating {
			// The namespace controller deletes what is inside; the
			// ServiceAccount applying may already have lost its
			// RoleBinding to it, so asking would only fail.
			entries = outside(entries, repo.Namespace)
		}
		applier, err := r.Appliers.For(repo.Namespace, repo.Spec.ServiceAccountName)
		if err == nil {
			err = r.deleteApplied(ctx, applier, repo, entries, terminating)
		}
		if err != nil {
			klog.FromContext(ctx).Error(err, "Deleting what a GitRepository applied")
			r.Recorder.Event(repo, corev1.EventTypeWarning, apply.ReasonPruneFailed, withFix(apply.ReasonPruneFailed, err.Error(), eventMessageBytes))
			return 10 * time.Second
		}
	}
	if repo.Spec.Prune == nil || *repo.Spec.Prune {
		// Before the finalizer goes: once it has, the GitRepository is
		// gone, and the informer may stop this worker before the write's
		// answer arrives. A retry after a failed write tells it again.
		r.emit(repo, cdevents.ServiceRemoved, repo.Status.LastSyncedCommit, "")
	}
	err := r.setFinalizer(ctx, repo, false)
	if err != nil && !apierrors.IsNotFound(err) {
		return 5 * time.Second
	}
	return time.Hour
}

// writeStatus applies mutate to the freshest copy of the status and writes
// it, retrying on conflicts, so a sync request accepted meanwhile is kept.
func (r *Reconciler) writeStatus(ctx context.Context, repo *v1alpha1.GitRepository, mutate func(*v1alpha1.GitRepositoryStatus, int64)) error {
	_, err := r.writeStatusOf(ctx, repo, mutate)
	return err
}

// writeStatusOf is writeStatus, returning the GitRepository as written.
func (r *Reconciler) writeStatusOf(ctx context.Context, repo *v1alpha1.GitRepository, mutate func(*v1alpha1.GitRepositoryStatus, int64)) (*v1alpha1.GitRepository, error) {
	client := r.Client.AlumiiniV1alpha1().GitRepositories(repo.Namespace)
	current := repo.DeepCopy()
	// The generation the caller acted on, even after a conflict re-read a
	// newer spec: a spec changed meanwhile is not observed by this write,
	// so the next sync applies it.
	acted := repo.Generation
	return current, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		// The fence of --share-work: the write is conditional on the
		// resourceVersion read, so it lands only while this process
		// still owns the GitRepository.
		if r.Owner != "" && current.Status.Owner != r.Owner {
			return errNotOwner
		}
		mutate(&current.Status, acted)
		updated, err := client.UpdateStatus(ctx, current, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			fresh, getErr := client.Get(ctx, repo.Name, metav1.GetOptions{})
			if getErr == nil && fresh.UID != repo.UID {
				// Deleted and created again under its name: this write (an
				// inventory, conditions) is about the old one, not this.
				return apierrors.NewNotFound(v1alpha1.Resource("gitrepositories"), repo.Name)
			}
			if getErr == nil {
				current = fresh
			}
		}
		if err == nil {
			*current = *updated
			series.showReady(updated)
		}
		return err
	})
}

// answer moves the pending request that this sync handled into
// lastSyncRequest with its result. A request that arrived during the sync
// (another id) stays pending for the next round.
func answer(s *v1alpha1.GitRepositoryStatus, handled *v1alpha1.SyncRequestRecord, phase v1alpha1.GitRepositoryPhase,
	commit, message string, counts v1alpha1.ObjectCounts, took time.Duration) {
	if handled == nil || s.PendingSyncRequest == nil || s.PendingSyncRequest.ID != handled.ID {
		return
	}
	if s.PendingSyncRequest.Rejoined {
		// Another request joined after this sync began (see
		// beginRequest), maybe for a push its listing came too early to
		// see: it stays pending, and the worker, woken by the join,
		// handles it again.
		return
	}
	done := s.PendingSyncRequest.DeepCopy()
	now := metav1.Now()
	done.HandledAt = &now
	done.Result = &v1alpha1.SyncResult{Phase: phase, Commit: commit, Message: message, Objects: counts,
		Duration: metav1.Duration{Duration: took.Round(time.Millisecond)}}
	s.LastSyncRequest = done
	s.PendingSyncRequest = nil
}

func (r *Reconciler) auth(ctx context.Context, namespace, secretName, url string) (*git.Auth, error) {
	data, err := r.secretData(ctx, namespace, secretName)
	if apierrors.IsNotFound(err) {
		return nil, &reasoned{ReasonSecretNotFound, fmt.Sprintf("secret %q named by spec.secretRef not found in namespace %q", secretName, namespace)}
	}
	if err != nil {
		return nil, &reasoned{ReasonSecretNotFound, fmt.Sprintf("reading secret %q: %v", secretName, apiMessage(err))}
	}
	return git.AuthFromSecret(secretName, url, data)
}

func (r *Reconciler) secretData(ctx context.Context, namespace, name string) (map[string][]byte, error) {
	if r.Secrets != nil {
		return r.Secrets.Data(ctx, namespace, name)
	}
	secret, err := r.Kube.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return secret.Data, nil
}

// errNotOwner: another replica owns the GitRepository now (--share-work).
var errNotOwner = errors.New("another replica owns this GitRepository now")

type reasoned struct{ reason, message string }

func (e *reasoned) Error() string { return e.message }

func reasonOf(err error) string {
	var r *reasoned
	var a *apply.Error
	switch {
	case errors.As(err, &r):
		return r.reason
	case errors.As(err, &a):
		return a.Reason
	}
	return git.Reason(err)
}

func apiMessage(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return status.Status().Message
	}
	return err.Error()
}

func fromInventory(inv *v1alpha1.Inventory) []apply.Entry {
	if inv == nil {
		return nil
	}
	entries := make([]apply.Entry, 0, len(inv.Entries))
	for _, e := range inv.Entries {
		entries = append(entries, apply.Entry{Group: e.Group, Version: e.Version, Kind: e.Kind, Namespace: e.Namespace, Name: e.Name})
	}
	return entries
}

// keptByGit are the entries whose manifest carried
// alumiini.false.systems/prune: disabled when last applied.
func keptByGit(inv *v1alpha1.Inventory) []apply.Entry {
	if inv == nil {
		return nil
	}
	var entries []apply.Entry
	for _, e := range inv.Entries {
		if e.PruneDisabled {
			entries = append(entries, apply.Entry{Group: e.Group, Version: e.Version, Kind: e.Kind, Namespace: e.Namespace, Name: e.Name})
		}
	}
	return entries
}

func toInventory(entries, keptByGit []apply.Entry) *v1alpha1.Inventory {
	kept := make(map[apply.Entry]bool, len(keptByGit))
	for _, e := range keptByGit {
		kept[e] = true
	}
	inv := &v1alpha1.Inventory{}
	for _, e := range entries {
		inv.Entries = append(inv.Entries, v1alpha1.InventoryEntry{Group: e.Group, Version: e.Version, Kind: e.Kind,
			Namespace: e.Namespace, Name: e.Name, PruneDisabled: kept[e]})
	}
	return inv
}

func short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}

// checkBounds fails a commit with more objects than one GitRepository may
// apply, or whose inventory would not fit in its status, before anything
// is applied.
func (r *Reconciler) checkBounds(objects []manifest.Object) error {
	if limit := r.maxObjects(); len(objects) > limit {
		return fmt.Errorf("the commit holds %d objects, over the limit of %d per GitRepository (--max-objects); "+
			"split it over several GitRepositories", len(objects), r.maxObjects())
	}
	size := 0
	for _, o := range objects {
		gvk := o.GroupVersionKind()
		size += len(gvk.Group) + len(gvk.Version) + len(gvk.Kind) + len(o.GetNamespace()) + len(o.GetName()) + 64
	}
	if size > maxInventoryBytes {
		return fmt.Errorf("the inventory of the commit's %d objects would take about %d bytes, over the %d bytes "+
			"a GitRepository's status keeps; split it over several GitRepositories", len(objects), size, maxInventoryBytes)
	}
	return nil
}

// brief shortens a message for an Event, which many tools show on one line;
// the status keeps the longer one.
func brief(s string) string {
	return shorten(s, eventMessageBytes, "… (see the GitRepository's status)")
}

// eventMessageBytes bounds an Event's message, and each line of what a
// watched object's writer says.
const eventMessageBytes = 1024

func (r *Reconciler) maxObjects() int {
	if r.MaxObjects <= 0 {
		return DefaultMaxObjects
	}
	return r.MaxObjects
}

// maxMessageBytes bounds every message written to status, sync results and
// Events: one bad commit of thousands of objects must not write megabytes.
const maxMessageBytes = 32 << 10

// truncate keeps a message within maxMessageBytes (the condition message
// limit of the API is 32 KiB).
func truncate(s string) string {
	return shorten(strings.TrimSpace(s), maxMessageBytes, "… (truncated)")
}

// shorten cuts s to at most max bytes, at a rune boundary, ending in suffix.
func shorten(s string, max int, suffix string) string {
	if len(s) <= max {
		return s
	}
	cut := max - len(suffix)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + suffix
}

// EventSink takes CDEvents (cdevents.Sink); Emit must not block.
type EventSink = cdevents.Emitter

// emit tells the delivery pipeline what happened to repo.
func (r *Reconciler) emit(repo *v1alpha1.GitRepository, eventType, commit, detail string) {
	if r.Events == nil {
		return
	}
	r.Events.Emit(cdevents.Event{Type: eventType, Namespace: repo.Namespace, Name: repo.Name, URL: repo.Spec.URL,
		Commit: commit, Environment: targetNamespace(repo), Detail: detail})
}
