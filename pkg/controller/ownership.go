package controller

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	clientset "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned"
	listers "github.com/falsesystems/alumiini/pkg/generated/listers/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/membership"
)

// Share is how a replica shares the work with others (--share-work).
type Share struct {
	// View tells the live replicas and who owns what.
	View *membership.View
	// Name is this replica's name (hashed), Identity this process's (the
	// holder of its Lease, written in status.owner).
	Name, Identity string
	// Recheck is how soon to look again at a GitRepository another live
	// replica still owns: it releases it, or dies and is judged dead a
	// lease duration after its last renewal.
	Recheck time.Duration
}

// ownership runs this replica's workers for exactly the GitRepositories it
// owns, moving them between replicas by writes to status.owner, each
// conditional on the resourceVersion read (so etcd orders them):
//   - a replica claims a GitRepository the hashing gives it only when no
//     one owns it or its owner is dead (its Lease not renewed for a lease
//     duration, by which time the owner stopped its own workers);
//   - a replica that no longer should own one stops its worker, waits for
//     it to return, and only then clears status.owner.
//
// So a GitRepository moves only from a stopped worker, and no two replicas
// sync it at once.
type ownership struct {
	share      Share
	client     clientset.Interface
	lister     listers.GitRepositoryLister
	supervisor *Supervisor
	queue      workqueue.TypedRateLimitingInterface[string]
}

const ownershipWorkers = 2

func newOwnership(share Share, client clientset.Interface, lister listers.GitRepositoryLister, supervisor *Supervisor) *ownership {
	return &ownership{share: share, client: client, lister: lister, supervisor: supervisor,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "ownership"})}
}

// run settles ownership until ctx ends.
func (o *ownership) run(ctx context.Context) {
	defer o.queue.ShutDown()
	for range ownershipWorkers {
		go func() {
			for o.settleNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
}

// mine reports whether this process runs repo's worker: it owns it by
// status and by hashing.
func (o *ownership) mine(repo *v1alpha1.GitRepository) bool {
	return repo.Status.Owner == o.share.Identity && o.share.View.OwnerOf(repo.Namespace+"/"+repo.Name) == o.share.Name
}

// settleAll looks again at every GitRepository: the live replicas changed.
func (o *ownership) settleAll() {
	repos, _ := o.lister.List(labels.Everything())
	for _, repo := range repos {
		o.queue.Add(repo.Namespace + "/" + repo.Name)
	}
}

func (o *ownership) settleNext(ctx context.Context) bool {
	key, shutdown := o.queue.Get()
	if shutdown {
		return false
	}
	defer o.queue.Done(key)
	again, err := o.settleRecovering(ctx, key)
	switch {
	case err != nil && ctx.Err() == nil:
		klog.FromContext(ctx).V(2).Info("Settling who owns a GitRepository; retrying", logKeyRepository, key, "err", err)
		o.queue.AddRateLimited(key)
	case again:
		o.queue.Forget(key)
		o.queue.AddAfter(key, o.share.Recheck)
	default:
		o.queue.Forget(key)
	}
	return true
}

// settleRecovering settles key, a panic becoming its error, so that the
// key is retried with backoff: ownership runs outside the supervisor, and a
// panic here would end the process, the API server and etcd with it.
func (o *ownership) settleRecovering(ctx context.Context, key string) (again bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			repoLogger(ctx, key).Error(nil, "Panic settling who owns a GitRepository; retrying",
				"panic", r, "stack", string(debug.Stack()))
			again, err = false, fmt.Errorf("panic: %v", r)
		}
	}()
	return o.settle(ctx, key)
}

// settle claims, keeps or hands over one GitRepository; again says to look
// later (another live replica still owns one this replica should).
func (o *ownership) settle(ctx context.Context, key string) (again bool, err error) {
	namespace, name, _ := cache.SplitMetaNamespaceKey(key)
	repo, err := o.lister.GitRepositories(namespace).Get(name)
	if apierrors.IsNotFound(err) {
		o.supervisor.Stop(key)
		return false, nil
	}
	if err != nil {
		return false, err
	}
	owner := repo.Status.Owner
	ours := o.share.View.OwnerOf(key) == o.share.Name
	if owner != o.share.Identity {
		// Another process owns it (or no one does): a worker here, left
		// from before a stall in which another replica claimed it, stops.
		o.supervisor.Stop(key)
	}
	switch {
	case ours && owner == o.share.Identity:
		o.supervisor.Ensure(key)
		return false, nil
	case ours && !o.share.View.Alive(owner) && !o.share.View.RenewedSince(ctx, owner):
		return false, o.setOwner(ctx, repo, o.share.Identity, "claimed")
	case ours:
		return true, nil // its owner is handing it over, or will be judged dead
	case owner == o.share.Identity && o.supervisor.Busy(key):
		// Settled again once the worker has returned, without holding
		// this goroutine for as long as its sync takes.
		o.supervisor.StopThen(key, func() { o.queue.Add(key) })
		return false, nil
	case owner == o.share.Identity:
		return false, o.setOwner(ctx, repo, "", "released")
	default:
		return false, nil
	}
}

// setOwner writes status.owner if the GitRepository is still as read; the
// informer's event for the write brings the next step.
func (o *ownership) setOwner(ctx context.Context, repo *v1alpha1.GitRepository, owner, move string) error {
	changed := repo.DeepCopy()
	changed.Status.Owner = owner
	_, err := o.client.AlumiiniV1alpha1().GitRepositories(repo.Namespace).UpdateStatus(ctx, changed, metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("writing status.owner %q: %w", owner, err)
	}
	ownershipMoves.WithLabelValues(move).Inc()
	klog.FromContext(ctx).V(2).Info("GitRepository "+move, logKeyRepository, klog.KObj(repo), "owner", owner)
	return nil
}
