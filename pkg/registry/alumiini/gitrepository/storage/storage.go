// Package storage holds the REST storages of GitRepository: the main resource
// over etcd3, its status subresource and its sync action subresource.
package storage

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
	"github.com/falsesystems/alumiini/pkg/registry/alumiini/gitrepository"
)

// GitRepositoryStorage holds the storages of gitrepositories and its subresources.
type GitRepositoryStorage struct {
	GitRepository *REST
	Status        *StatusREST
	Sync          *SyncREST
}

// REST is the main gitrepositories storage.
type REST struct {
	*genericregistry.Store
	identity gitrepository.IdentityPolicy
}

var (
	_ rest.ShortNamesProvider = &REST{}
	_ rest.CategoriesProvider = &REST{}
)

// ShortNames lets kubectl get gitrepo work.
func (r *REST) ShortNames() []string { return []string{"gitrepo"} }

// Categories puts GitRepositories in kubectl get alumiini.
func (r *REST) Categories() []string { return []string{"alumiini"} }

// Options of the GitRepository storages.
type Options struct {
	// PruneFinalizer, when not empty, is added to new pruning GitRepositories
	// (see gitrepository.Strategy).
	PruneFinalizer string
	// Authorizer checks the rights a request needs beyond its verb: leaving
	// spec.serviceAccountName empty, and a sync request's revision or force.
	Authorizer authorizer.Authorizer
	// DefaultServiceAccount is what a GitRepository without
	// serviceAccountName applies as (--default-service-account).
	DefaultServiceAccount string
	// Stopping is closed when the server begins to stop: sync requests
	// still waiting for their result then answer at once rather than hold
	// the stop; each stays recorded for whichever controller handles it.
	// Nil never closes.
	Stopping <-chan struct{}
}

// NewStorage returns the storages of gitrepositories, gitrepositories/status
// and gitrepositories/sync over the given REST options.
func NewStorage(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, opts Options) (GitRepositoryStorage, error) {
	strategy := gitrepository.NewStrategy(scheme)
	strategy.PruneFinalizer = opts.PruneFinalizer
	identity := gitrepository.IdentityPolicy{Authorizer: opts.Authorizer, DefaultServiceAccount: opts.DefaultServiceAccount}
	strategy.Identity = identity
	statusStrategy := gitrepository.NewStatusStrategy(strategy)

	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &alumiini.GitRepository{} },
		NewListFunc:               func() runtime.Object { return &alumiini.GitRepositoryList{} },
		PredicateFunc:             gitrepository.Matcher,
		DefaultQualifiedResource:  alumiini.Resource("gitrepositories"),
		SingularQualifiedResource: alumiini.Resource("gitrepository"),

		CreateStrategy:      strategy,
		UpdateStrategy:      strategy,
		DeleteStrategy:      strategy,
		ResetFieldsStrategy: strategy,

		TableConvertor: gitrepository.NewTableConvertor(),
	}
	options := &generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: gitrepository.GetAttrs}
	if err := store.CompleteWithOptions(options); err != nil {
		return GitRepositoryStorage{}, fmt.Errorf("completing the gitrepositories store: %w", err)
	}

	statusStore := *store
	statusStore.UpdateStrategy = statusStrategy
	statusStore.ResetFieldsStrategy = statusStrategy

	return GitRepositoryStorage{
		GitRepository: &REST{Store: store, identity: identity},
		Status:        &StatusREST{store: &statusStore},
		Sync:          newSyncREST(store, opts.Authorizer, identity, opts.Stopping),
	}, nil
}

// StatusREST is the storage of gitrepositories/status: get and update, and an
// update changes only the status.
type StatusREST struct {
	store *genericregistry.Store
}

var (
	_ rest.Getter  = &StatusREST{}
	_ rest.Updater = &StatusREST{}
	_ rest.Patcher = &StatusREST{}
)

// New returns an empty GitRepository.
func (r *StatusREST) New() runtime.Object { return &alumiini.GitRepository{} }

// Destroy does nothing: the main store owns the shared backend.
func (r *StatusREST) Destroy() {}

// Get returns the GitRepository, so a status patch has something to patch.
func (r *StatusREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, options)
}

// Update writes the status of a GitRepository.
func (r *StatusREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc,
	updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	// Status writes never create the object, whatever the caller asks.
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
}

// GetResetFields tells server-side apply which fields a status write resets.
func (r *StatusREST) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.GetResetFields()
}

// ConvertToTable prints the GitRepository the same way the main resource does.
func (r *StatusREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return r.store.ConvertToTable(ctx, object, tableOptions)
}
