package controller

import (
	"context"
	"errors"
	"fmt"
	pathpkg "path"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/apply"
	clientset "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned"
	listers "github.com/falsesystems/alumiini/pkg/generated/listers/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/git"
	"github.com/falsesystems/alumiini/pkg/manifest"
	"github.com/falsesystems/alumiini/pkg/slots"
)

// FinalizerPrune makes deleting a GitRepository with prune: true delete what
// it applied first.
const FinalizerPrune = "alumiini.false.systems/prune"

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
	ReasonInvalidSpec    = "InvalidSpec"
	ReasonSecretNotFound = "SecretNotFound"
	ReasonRenderFailed   = "RenderFailed"
	ReasonWorkerCrashed  = "WorkerCrashLoop"
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

	failures sync.Map // key → consecutive failures, for retry backoff
}

var commitPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)

// Sync brings one GitRepository up to date and says when to look again.
func (r *Reconciler) Sync(ctx context.Context, key string) time.Duration {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return time.Hour
	}
	repo, err := r.Lister.GitRepositories(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		return time.Hour // deleted; the controller stops this worker
	}
	if err != nil {
		return 5 * time.Second
	}
	interval, _ := time.ParseDuration(repo.Spec.Interval)
	if interval <= 0 {
		interval = 5 * time.Minute
	}
	if repo.DeletionTimestamp != nil {
		return r.finalize(ctx, repo)
	}
	if err := r.ensureFinalizer(ctx, repo); err != nil {
		klog.ErrorS(err, "Updating finalizers", "gitrepository", key)
		return 5 * time.Second
	}
	if repo.Spec.Suspend {
		r.suspend(ctx, repo)
		return interval
	}
	if ok := r.syncOnce(ctx, repo); ok {
		r.failures.Delete(key)
		return jitter(interval)
	}
	// Failures retry sooner than the interval, backing off from 5s.
	n, _ := r.failures.LoadOrStore(key, 0)
	count := n.(int) + 1
	r.failures.Store(key, count)
	return min(interval, time.Duration(5<<min(count-1, 10))*time.Second)
}

// Forget drops what the reconciler keeps about a deleted GitRepository.
func (r *Reconciler) Forget(key string) { r.failures.Delete(key) }

// syncOnce runs one sync through the stages of DESIGN.md's pipeline
// (resolve, fetch, render, apply, report) and reports success.
func (r *Reconciler) syncOnce(ctx context.Context, repo *v1alpha1.GitRepository) bool {
	start := time.Now()
	timeout, _ := time.ParseDuration(repo.Spec.Timeout)
	if timeout <= 0 {
		timeout = time.Minute
	}
	syncCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	pending := repo.Status.PendingSyncRequest
	commit, result, err := r.run(syncCtx, repo, pending)
	// The outcome is written even when the sync used up its own time (a
	// timeout is an outcome too), within a bound of its own.
	ctx, cancelWrite := context.WithTimeout(ctx, statusWriteTimeout)
	defer cancelWrite()
	var stage *stageError
	switch {
	case errors.As(err, &stage):
		return r.fail(ctx, repo, pending, stage.commit, stage.reason, stage.Error(), start)
	case err != nil: // every stage names its failure; this is only a guard
		return r.fail(ctx, repo, pending, commit, reasonOf(err), err.Error(), start)
	case result == nil:
		return true // idle: nothing new, nothing asked
	}
	return r.report(ctx, repo, pending, commit, result, start)
}

// stageError is a stage's failure: the condition reason, and the commit the
// sync had got to, if any.
type stageError struct {
	reason, commit string
	err            error
}

func (e *stageError) Error() string { return e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

func failed(reason, commit string, err error) *stageError {
	return &stageError{reason: reason, commit: commit, err: err}
}

// run takes the stages in order; a nil result with no error means idle.
func (r *Reconciler) run(ctx context.Context, repo *v1alpha1.GitRepository, pending *v1alpha1.SyncRequestRecord) (string, *apply.Result, error) {
	src, err := r.resolve(ctx, repo, pending)
	if err != nil {
		return "", nil, err
	}
	tree, err := r.fetch(ctx, repo, pending, src)
	if err != nil || tree == nil {
		return "", nil, err
	}
	objects, err := r.render(ctx, repo, src, tree)
	if err != nil {
		return tree.Commit, nil, err
	}
	force := pending != nil && pending.Force
	result, err := r.apply(ctx, repo, objects, force, tree.Commit)
	return tree.Commit, result, err
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

// fetch lists the remote and, unless nothing changed, reads the path of the
// newest commit. It returns a nil tree when the sync is idle: the remote has
// nothing new, the spec has not changed, the last sync succeeded and nobody
// asked, so one ref listing was the whole cost.
func (r *Reconciler) fetch(ctx context.Context, repo *v1alpha1.GitRepository, pending *v1alpha1.SyncRequestRecord, src git.Source) (*git.Tree, error) {
	if pending != nil {
		r.Git.Forget(src) // a request must see a push made a moment ago
	}
	commit, err := r.Git.Latest(ctx, src)
	if err != nil {
		return nil, failed(git.Reason(err), "", err)
	}
	st := repo.Status
	if pending == nil && commit == st.LastSyncedCommit && st.ObservedGeneration == repo.Generation &&
		st.Phase == v1alpha1.PhaseSynced {
		return nil, nil
	}
	tree, err := r.Git.Files(ctx, src, commit, repo.Spec.Path)
	if err != nil {
		return nil, failed(git.Reason(err), commit, err)
	}
	return tree, nil
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
// holding one of the shared apply slots.
func (r *Reconciler) apply(ctx context.Context, repo *v1alpha1.GitRepository, objects []manifest.Object, force bool, commit string) (*apply.Result, error) {
	applier, err := r.Appliers.For(repo.Namespace, repo.Spec.ServiceAccountName)
	if err != nil {
		return nil, failed(apply.ReasonApplyFailed, commit, err)
	}
	target := repo.Spec.TargetNamespace
	if target == "" {
		target = repo.Namespace
	}
	release, err := r.ApplySlots.Acquire(ctx, repo.Namespace)
	if err != nil {
		return nil, failed(git.ReasonTimeout, commit, errors.New("timed out waiting for an apply slot"))
	}
	defer release()
	result, err := applier.Apply(ctx, apply.Owner{Namespace: repo.Namespace, Name: repo.Name}, objects, apply.Options{
		DefaultNamespace: target,
		Prune:            repo.Spec.Prune == nil || *repo.Spec.Prune,
		Previous:         fromInventory(repo.Status.Inventory),
		Force:            force,
		Adopt:            repo.Spec.Adopt,
	})
	if err != nil {
		return nil, failed(reasonOf(err), commit, err)
	}
	return result, nil
}

// report writes a successful sync into the status and an Event.
func (r *Reconciler) report(ctx context.Context, repo *v1alpha1.GitRepository, pending *v1alpha1.SyncRequestRecord,
	commit string, result *apply.Result, start time.Time) bool {
	counts := v1alpha1.ObjectCounts{Created: int32(result.Created), Configured: int32(result.Configured),
		Unchanged: int32(result.Unchanged), Pruned: int32(result.Pruned)}
	message := fmt.Sprintf("applied commit %s: %d created, %d configured, %d unchanged, %d pruned",
		short(commit), result.Created, result.Configured, result.Unchanged, result.Pruned)
	err := r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		now := metav1.Now()
		s.Phase = v1alpha1.PhaseSynced
		s.ObservedGeneration = generation
		s.LastAttemptedCommit = commit
		s.LastSyncedCommit = commit
		s.LastSyncTime = &now
		s.Message = message
		s.Objects = &counts
		s.Inventory = toInventory(result.Inventory)
		setConditions(s, generation, metav1.ConditionTrue, ReasonSucceeded, message, false)
		answer(s, pending, v1alpha1.PhaseSynced, commit, message, counts, time.Since(start))
	})
	if err != nil {
		klog.ErrorS(err, "Writing status", "gitrepository", klog.KObj(repo))
		return false
	}
	if result.Created+result.Configured+result.Pruned > 0 || pending != nil {
		r.Recorder.Event(repo, corev1.EventTypeNormal, "Synced", message)
	}
	return true
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

// fail records a failed sync: the last good state stays applied and the
// status says why.
func (r *Reconciler) fail(ctx context.Context, repo *v1alpha1.GitRepository, pending *v1alpha1.SyncRequestRecord,
	commit, reason, message string, start time.Time) bool {
	message = truncate(message)
	err := r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		s.Phase = v1alpha1.PhaseFailed
		s.ObservedGeneration = generation
		if commit != "" {
			s.LastAttemptedCommit = commit
		}
		s.Message = message
		setConditions(s, generation, metav1.ConditionFalse, reason, message, false)
		answer(s, pending, v1alpha1.PhaseFailed, commit, message, v1alpha1.ObjectCounts{}, time.Since(start))
	})
	if err != nil {
		klog.ErrorS(err, "Writing status", "gitrepository", klog.KObj(repo))
	}
	if repo.Status.Message != message || pending != nil {
		r.Recorder.Event(repo, corev1.EventTypeWarning, reason, brief(message))
	}
	return false
}

// Stall marks a GitRepository whose worker keeps crashing.
func (r *Reconciler) Stall(key, message string) {
	message = truncate(message)
	namespace, name, _ := cache.SplitMetaNamespaceKey(key)
	repo, err := r.Lister.GitRepositories(namespace).Get(name)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		s.Phase = v1alpha1.PhaseFailed
		s.Message = message
		setConditions(s, generation, metav1.ConditionFalse, ReasonWorkerCrashed, message, true)
		answer(s, s.PendingSyncRequest, v1alpha1.PhaseFailed, "", message, v1alpha1.ObjectCounts{}, 0)
	})
	if err != nil {
		klog.ErrorS(err, "Marking a GitRepository stalled", "gitrepository", key)
	}
	r.Recorder.Event(repo, corev1.EventTypeWarning, ReasonWorkerCrashed, brief(message))
}

func (r *Reconciler) suspend(ctx context.Context, repo *v1alpha1.GitRepository) {
	if repo.Status.Phase == v1alpha1.PhaseSuspended && repo.Status.PendingSyncRequest == nil &&
		repo.Status.ObservedGeneration == repo.Generation {
		return
	}
	const message = "suspended: spec.suspend is true"
	err := r.writeStatus(ctx, repo, func(s *v1alpha1.GitRepositoryStatus, generation int64) {
		s.Phase = v1alpha1.PhaseSuspended
		s.ObservedGeneration = generation
		s.Message = message
		setConditions(s, generation, metav1.ConditionFalse, ReasonSuspended, message, false)
		apimeta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: v1alpha1.ConditionReconciling,
			Status: metav1.ConditionFalse, Reason: ReasonSuspended, Message: message, ObservedGeneration: generation})
		answer(s, s.PendingSyncRequest, v1alpha1.PhaseFailed, "", message, v1alpha1.ObjectCounts{}, 0)
	})
	if err != nil {
		klog.ErrorS(err, "Writing status", "gitrepository", klog.KObj(repo))
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
func (r *Reconciler) finalize(ctx context.Context, repo *v1alpha1.GitRepository) time.Duration {
	if !slices.Contains(repo.Finalizers, FinalizerPrune) {
		return time.Hour
	}
	if repo.Spec.Prune == nil || *repo.Spec.Prune {
		applier, err := r.Appliers.For(repo.Namespace, repo.Spec.ServiceAccountName)
		if err == nil {
			_, err = applier.Delete(ctx, apply.Owner{Namespace: repo.Namespace, Name: repo.Name}, fromInventory(repo.Status.Inventory))
		}
		if err != nil {
			klog.ErrorS(err, "Deleting what a GitRepository applied", "gitrepository", klog.KObj(repo))
			r.Recorder.Event(repo, corev1.EventTypeWarning, apply.ReasonPruneFailed, brief(err.Error()))
			return 10 * time.Second
		}
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
	client := r.Client.AlumiiniV1alpha1().GitRepositories(repo.Namespace)
	current := repo.DeepCopy()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mutate(&current.Status, current.Generation)
		updated, err := client.UpdateStatus(ctx, current, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			if fresh, getErr := client.Get(ctx, repo.Name, metav1.GetOptions{}); getErr == nil {
				current = fresh
			}
		}
		if err == nil {
			*current = *updated
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
	done := s.PendingSyncRequest.DeepCopy()
	now := metav1.Now()
	done.HandledAt = &now
	done.Result = &v1alpha1.SyncResult{Phase: phase, Commit: commit, Message: message, Objects: counts,
		Duration: metav1.Duration{Duration: took.Round(time.Millisecond)}}
	s.LastSyncRequest = done
	s.PendingSyncRequest = nil
}

// setConditions sets kstatus-compatible conditions: Ready says how the last
// sync went, Reconciling is false once a result is in, Stalled says the
// worker gave up for now.
func setConditions(s *v1alpha1.GitRepositoryStatus, generation int64, ready metav1.ConditionStatus, reason, message string, stalled bool) {
	apimeta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: ready,
		Reason: reason, Message: truncate(message), ObservedGeneration: generation})
	apimeta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: v1alpha1.ConditionReconciling, Status: metav1.ConditionFalse,
		Reason: reason, Message: "sync finished", ObservedGeneration: generation})
	stalledStatus, stalledReason := metav1.ConditionFalse, ReasonSucceeded
	if stalled {
		stalledStatus, stalledReason = metav1.ConditionTrue, ReasonWorkerCrashed
	}
	apimeta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: v1alpha1.ConditionStalled, Status: stalledStatus,
		Reason: stalledReason, Message: truncate(message), ObservedGeneration: generation})
}

func (r *Reconciler) auth(ctx context.Context, namespace, secretName, url string) (*git.Auth, error) {
	secret, err := r.Kube.CoreV1().Secrets(namespace).Get(ctx, secretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, &reasoned{ReasonSecretNotFound, fmt.Sprintf("secret %q named by spec.secretRef not found in namespace %q", secretName, namespace)}
	}
	if err != nil {
		return nil, &reasoned{ReasonSecretNotFound, fmt.Sprintf("reading secret %q: %v", secretName, apiMessage(err))}
	}
	return git.AuthFromSecret(secretName, url, secret.Data)
}

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

func toInventory(entries []apply.Entry) *v1alpha1.Inventory {
	inv := &v1alpha1.Inventory{}
	for _, e := range entries {
		inv.Entries = append(inv.Entries, v1alpha1.InventoryEntry{Group: e.Group, Version: e.Version, Kind: e.Kind, Namespace: e.Namespace, Name: e.Name})
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
func brief(s string) string { return shorten(s, 1024, "… (see the GitRepository's status)") }

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
