package storage

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
)

// authorizeSpec asks for more than `create` on gitrepositories/sync when the
// request does more than "sync what the spec says now": a revision deploys
// any branch, tag or commit (unreviewed ones included) and force deletes and
// recreates objects. Both need the rights of changing the GitRepository's
// spec: update on it, and for one that applies with alumiini's own identity,
// escalate as well.
func (r *SyncREST) authorizeSpec(ctx context.Context, name string, req *alumiini.GitRepositorySyncRequest) error {
	if req.Spec.Revision == "" && !req.Spec.Force {
		return nil
	}
	if err := r.authorizeUpdate(ctx, name, req); err != nil {
		return err
	}
	obj, err := r.store.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return err
	}
	if errs := r.identity.Check(ctx, obj.(*alumiini.GitRepository), nil); len(errs) > 0 {
		return apierrors.NewForbidden(alumiini.Resource("gitrepositories"), name, fmt.Errorf(
			"a sync request with a revision or force changes what this gitrepository applies: %s", errs.ToAggregate()))
	}
	return nil
}

func (r *SyncREST) authorizeUpdate(ctx context.Context, name string, req *alumiini.GitRepositorySyncRequest) error {
	if r.authorizer == nil {
		return apierrors.NewForbidden(alumiini.Resource("gitrepositories"), name, fmt.Errorf("no authorizer to check a revision or force"))
	}
	resource := alumiini.Resource("gitrepositories")
	user, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return apierrors.NewForbidden(resource, name, fmt.Errorf("no user in the request to check"))
	}
	namespace, _ := genericapirequest.NamespaceFrom(ctx)
	decision, _, err := r.authorizer.Authorize(ctx, authorizer.AttributesRecord{
		User:            user,
		Verb:            "update",
		Namespace:       namespace,
		APIGroup:        alumiini.GroupName,
		Resource:        "gitrepositories",
		Name:            name,
		ResourceRequest: true,
	})
	if decision == authorizer.DecisionAllow {
		return nil
	}
	what := "spec.revision"
	if req.Spec.Revision == "" {
		what = "spec.force"
	}
	if err != nil {
		return apierrors.NewForbidden(resource, name, fmt.Errorf("checking whether %s may set %s: %w", user.GetName(), what, err))
	}
	return apierrors.NewForbidden(resource, name, fmt.Errorf(
		"a sync request with %s needs the right to update the gitrepository (verb update on gitrepositories.%s); "+
			"user %q has only the right to ask for a plain sync: leave revision and force unset",
		what, alumiini.GroupName, user.GetName()))
}
