package storage

import (
	"context"
	"fmt"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/storage"
	storeerr "k8s.io/apiserver/pkg/storage/errors"
	"k8s.io/apiserver/pkg/util/dryrun"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/apis/alumiini/validation"
	"github.com/falsesystems/alumiini/pkg/peruser"
	"github.com/falsesystems/alumiini/pkg/registry/alumiini/gitrepository"
)

// SyncREST is the storage of gitrepositories/sync: a POST records a sync
// request on its GitRepository, where the controller finds it through its
// informer, and may wait for the controller to write the result back.
type SyncREST struct {
	store      *genericregistry.Store
	authorizer authorizer.Authorizer
	identity   gitrepository.IdentityPolicy
	waiters    *peruser.Limit
	stopping   <-chan struct{}
}

// DefaultMaxWaitersPerUser bounds the sync requests with wait: true that one
// user (or one namespace's ServiceAccounts) holds open at once; each holds a
// watch and a goroutine for up to 30s.
const DefaultMaxWaitersPerUser = 10

func newSyncREST(store *genericregistry.Store, authz authorizer.Authorizer, identity gitrepository.IdentityPolicy, stopping <-chan struct{}) *SyncREST {
	return &SyncREST{store: store, authorizer: authz, identity: identity, stopping: stopping, waiters: peruser.New(DefaultMaxWaitersPerUser, 1,
		"sync requests waiting for their result", "ask without wait, or wait for one to finish")}
}

var (
	_ rest.NamedCreater             = &SyncREST{}
	_ rest.GroupVersionKindProvider = &SyncREST{}
	_ rest.Storage                  = &SyncREST{}
)

// New returns an empty sync request for the request body to be decoded into.
func (r *SyncREST) New() runtime.Object { return &alumiini.GitRepositorySyncRequest{} }

// Destroy does nothing: the main store owns the shared backend.
func (r *SyncREST) Destroy() {}

// GroupVersionKind tells discovery the subresource speaks GitRepositorySyncRequest.
func (r *SyncREST) GroupVersionKind(containingGV schema.GroupVersion) schema.GroupVersionKind {
	return containingGV.WithKind("GitRepositorySyncRequest")
}

// Create records the sync request on GitRepository name and, when asked to
// wait, returns once the controller has written its result.
func (r *SyncREST) Create(ctx context.Context, name string, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	req, ok := obj.(*alumiini.GitRepositorySyncRequest)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected a GitRepositorySyncRequest, got %T", obj))
	}
	errs := validation.ValidateSyncRequest(req)
	if req.Name != "" && req.Name != name {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), req.Name,
			fmt.Sprintf("must be the name of the GitRepository in the URL, %q", name)))
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(alumiini.Kind("GitRepositorySyncRequest"), name, errs)
	}
	if createValidation != nil {
		if err := createValidation(ctx, req.DeepCopyObject()); err != nil {
			return nil, err
		}
	}
	if err := r.authorizeSpec(ctx, name, req); err != nil {
		return nil, err
	}

	dryRun := dryrun.IsDryRun(options.DryRun)
	if req.Spec.Wait && !dryRun {
		release, err := r.waiters.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	record, repo, err := r.record(ctx, name, req, dryRun)
	if err != nil {
		return nil, err
	}
	answer := syncAnswer(repo, req, record)
	if !req.Spec.Wait || dryRun {
		return answer, nil
	}
	return r.waitForResult(ctx, repo, req, answer)
}

// record puts the request on the GitRepository with a guaranteed update, so it
// survives a restart and reaches the controller through its informer. A request
// that arrives while an equal one is pending joins it: both callers get the same
// id and the same result, and the repository syncs once, or once more if the
// join came after that sync began.
func (r *SyncREST) record(ctx context.Context, name string, req *alumiini.GitRepositorySyncRequest, dryRun bool) (*alumiini.SyncRequestRecord, *alumiini.GitRepository, error) {
	key, err := r.store.KeyFunc(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	requester := ""
	if u, ok := genericapirequest.UserFrom(ctx); ok {
		requester = u.GetName()
	}
	var record *alumiini.SyncRequestRecord
	updated := &alumiini.GitRepository{}
	err = r.store.Storage.GuaranteedUpdate(ctx, key, updated, false, nil, storage.SimpleUpdate(func(obj runtime.Object) (runtime.Object, error) {
		repo := obj.(*alumiini.GitRepository)
		if repo.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(alumiini.Resource("gitrepositories"), name,
				fmt.Errorf("it is being deleted; no sync request is accepted"))
		}
		if repo.Spec.Suspend {
			return nil, apierrors.NewConflict(alumiini.Resource("gitrepositories"), name,
				fmt.Errorf("it is suspended (spec.suspend: true); resume it before asking for a sync"))
		}
		if pending := repo.Status.PendingSyncRequest; pending != nil {
			if pending.Revision != req.Spec.Revision {
				return nil, apierrors.NewConflict(alumiini.Resource("gitrepositories"), name,
					fmt.Errorf("sync request %s for revision %q is still pending; wait for it before asking for revision %q",
						pending.ID, pending.Revision, req.Spec.Revision))
			}
			pending.Force = pending.Force || req.Spec.Force
			// So that a sync already under way handles the request again:
			// it may have listed the remote before this request's push.
			// Set once per round, so a flood of joins costs one write each.
			pending.Rejoined = true
			if pending.RequestedBy == user.APIServerUser && requester != user.APIServerUser {
				// A person's request joining a push a replica handed over
				// asks for a full sync, not only a fresh listing.
				pending.RequestedBy = requester
			}
			record = pending.DeepCopy()
			return repo, nil
		}
		record = &alumiini.SyncRequestRecord{
			ID:          string(uuid.NewUUID()),
			Revision:    req.Spec.Revision,
			Force:       req.Spec.Force,
			RequestedBy: requester,
			AcceptedAt:  metav1.Now(),
		}
		repo.Status.PendingSyncRequest = record.DeepCopy()
		return repo, nil
	}), dryRun, nil)
	if err != nil {
		if _, isStatus := err.(apierrors.APIStatus); isStatus && !storage.IsNotFound(err) {
			return nil, nil, err
		}
		return nil, nil, storeerr.InterpretUpdateError(err, alumiini.Resource("gitrepositories"), name)
	}
	return record, updated, nil
}

// waitForResult watches the GitRepository from the write that recorded the
// request until the controller has written the request's result, the
// GitRepository is deleted, the request's timeout passes, or the server
// begins to stop.
func (r *SyncREST) waitForResult(ctx context.Context, repo *alumiini.GitRepository, req *alumiini.GitRepositorySyncRequest,
	answer *alumiini.GitRepositorySyncRequest) (runtime.Object, error) {
	seconds := v1alpha1.DefaultSyncWaitSeconds
	if req.Spec.TimeoutSeconds != nil {
		seconds = *req.Spec.TimeoutSeconds
	}
	waitCtx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second)
	defer cancel()

	if done := resultOf(repo, answer); done != nil {
		return done, nil
	}
	w, err := r.store.Watch(waitCtx, &metainternalversion.ListOptions{
		ResourceVersion: repo.ResourceVersion,
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", repo.Name),
	})
	if err != nil {
		return nil, fmt.Errorf("watching gitrepository %s for sync request %s: %w", repo.Name, answer.Status.ID, err)
	}
	defer w.Stop()
	for {
		select {
		case <-waitCtx.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, apierrors.NewTimeoutError(fmt.Sprintf(
				"sync request %s for gitrepository %q was not handled within %ds; it stays queued and will still run",
				answer.Status.ID, repo.Name, seconds), 0)
		case <-r.stopping:
			// The stop let the syncs that were writing finish first: this
			// one's result may be stored already, its event not yet here.
			stored, err := r.store.Get(waitCtx, repo.Name, &metav1.GetOptions{})
			current, _ := stored.(*alumiini.GitRepository)
			switch {
			case apierrors.IsNotFound(err) || err == nil && current != nil && current.UID != repo.UID:
				return nil, deletedWhileWaiting(repo.Name, answer.Status.ID)
			case current != nil:
				if done := resultOf(current, answer); done != nil {
					return done, nil
				}
			}
			return nil, stoppedWhileWaiting(repo.Name, answer.Status.ID)
		case event, ok := <-w.ResultChan():
			if !ok {
				return nil, apierrors.NewServiceUnavailable(fmt.Sprintf(
					"the watch for sync request %s ended early; the request stays queued", answer.Status.ID))
			}
			switch event.Type {
			case watch.Deleted:
				return nil, deletedWhileWaiting(repo.Name, answer.Status.ID)
			case watch.Error:
				return nil, apierrors.FromObject(event.Object)
			case watch.Added, watch.Modified:
				obj := event.Object
				// The watch cache hands out objects wrapped for shared serialisation.
				if cacheable, ok := obj.(runtime.CacheableObject); ok {
					obj = cacheable.GetObject()
				}
				if current, ok := obj.(*alumiini.GitRepository); ok {
					if done := resultOf(current, answer); done != nil {
						return done, nil
					}
				}
			}
		}
	}
}

// resultOf returns the answer completed with the result, once the controller
// has recorded the request as handled.
func resultOf(repo *alumiini.GitRepository, answer *alumiini.GitRepositorySyncRequest) *alumiini.GitRepositorySyncRequest {
	last := repo.Status.LastSyncRequest
	if last == nil || last.ID != answer.Status.ID || last.Result == nil {
		return nil
	}
	done := answer.DeepCopy()
	done.Status.HandledAt = last.HandledAt
	done.Status.Phase = last.Result.Phase
	done.Status.Commit = last.Result.Commit
	done.Status.Message = last.Result.Message
	objects := last.Result.Objects
	done.Status.Objects = &objects
	elapsed := last.Result.Duration
	done.Status.Duration = &elapsed
	return done
}

func syncAnswer(repo *alumiini.GitRepository, req *alumiini.GitRepositorySyncRequest, record *alumiini.SyncRequestRecord) *alumiini.GitRepositorySyncRequest {
	accepted := record.AcceptedAt
	return &alumiini.GitRepositorySyncRequest{
		ObjectMeta: metav1.ObjectMeta{
			Name:              repo.Name,
			Namespace:         repo.Namespace,
			UID:               repo.UID,
			CreationTimestamp: accepted,
		},
		Spec: req.Spec,
		Status: alumiini.GitRepositorySyncRequestStatus{
			ID:         record.ID,
			AcceptedAt: &accepted,
			Phase:      alumiini.PhasePending,
			Message:    "accepted; the controller syncs it next",
		},
	}
}

// stoppedWhileWaiting answers a waiting sync request when the server stops:
// held open, it would keep the process from stopping within a pod's grace
// period. The request is recorded in the GitRepository's status, so it runs
// whether or not anyone waits: on another replica, or once alumiini serves
// again. No Retry-After: client-go would ask again a second later, and with
// one replica kubectl would then print kube-apiserver's "unable to handle
// the request" instead of this.
func stoppedWhileWaiting(name, id string) error {
	return waitEnded(name, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, fmt.Sprintf(
		"this alumiini replica is stopping: sync request %s for gitrepository %q stays queued and will still run; "+
			"its result shows in status.lastSyncRequest, or ask again with wait to follow it while it is pending", id, name))
}

func deletedWhileWaiting(name, id string) error {
	return waitEnded(name, http.StatusGone, metav1.StatusReasonGone,
		fmt.Sprintf("gitrepository %q was deleted while sync request %s waited for its result", name, id))
}

// waitEnded is the error that ends a sync request's wait for the result.
func waitEnded(name string, code int32, reason metav1.StatusReason, message string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    code,
		Reason:  reason,
		Details: &metav1.StatusDetails{Group: alumiini.GroupName, Kind: "gitrepositories", Name: name},
		Message: message,
	}}
}
