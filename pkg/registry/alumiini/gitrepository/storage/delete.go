package storage

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
	"github.com/falsesystems/alumiini/pkg/registry/alumiini/gitrepository"
)

// Delete deletes a GitRepository, refusing a user who could not have written
// it when deleting it prunes with alumiini's own identity (its finalizer
// deletes everything it applied, cluster-scoped objects included) or, for
// one that denies break-glass, leaves what it applied out of git.
func (r *REST) Delete(ctx context.Context, name string, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions) (runtime.Object, bool, error) {
	return r.Store.Delete(ctx, name, r.guardDelete(deleteValidation), options)
}

// DeleteCollection applies the same rule to every GitRepository it deletes.
func (r *REST) DeleteCollection(ctx context.Context, deleteValidation rest.ValidateObjectFunc, options *metav1.DeleteOptions,
	listOptions *metainternalversion.ListOptions) (runtime.Object, error) {
	return r.Store.DeleteCollection(ctx, r.guardDelete(deleteValidation), options, listOptions)
}

// guardDelete runs inside the store's delete, against the stored object.
func (r *REST) guardDelete(next rest.ValidateObjectFunc) rest.ValidateObjectFunc {
	return func(ctx context.Context, obj runtime.Object) error {
		repo, ok := obj.(*alumiini.GitRepository)
		prunes := ok && (repo.Spec.Prune == nil || *repo.Spec.Prune)
		// Without pruning, deleting it leaves its objects to whoever may
		// change them, which denying break-glass forbids.
		keeps := ok && !prunes && !gitrepository.AllowsBreakGlass(repo.Spec)
		if (prunes || keeps) && !gitrepository.IsNamespaceController(ctx) && !gitrepository.IsGarbageCollector(ctx) {
			if errs := r.identity.Check(ctx, repo, nil); len(errs) > 0 {
				what := "prunes what it applied with alumiini's own identity"
				if keeps {
					what = "leaves what it applied with alumiini's own identity out of git, which its spec.drift.allowBreakGlass: false forbids"
				}
				return apierrors.NewForbidden(alumiini.Resource("gitrepositories"), repo.Name, fmt.Errorf(
					"deleting it %s: %s", what, errs.ToAggregate()))
			}
		}
		if next != nil {
			return next(ctx, obj)
		}
		return nil
	}
}
