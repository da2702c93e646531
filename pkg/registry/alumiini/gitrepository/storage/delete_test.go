package storage

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/utils/ptr"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
	"github.com/falsesystems/alumiini/pkg/registry/alumiini/gitrepository"
)

func denyingBreakGlass(repo *alumiini.GitRepository) *alumiini.GitRepository {
	repo.Spec.Drift = &alumiini.DriftSpec{AllowBreakGlass: ptr.To(false)}
	return repo
}

// TestDeletingWhatPrunesAsAlumiiniNeedsEscalate: and so does deleting one
// that keeps its objects while it denies break-glass: they would be left to
// whoever may change them.
func TestDeletingWhatPrunesAsAlumiiniNeedsEscalate(t *testing.T) {
	escalators := authorizer.AuthorizerFunc(func(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
		if a.GetVerb() == gitrepository.VerbEscalate && a.GetUser().GetName() == "platform" {
			return authorizer.DecisionAllow, "", nil
		}
		return authorizer.DecisionNoOpinion, "", nil
	})
	r := &REST{identity: gitrepository.IdentityPolicy{Authorizer: escalators}}
	repo := func(serviceAccount string, prune bool) *alumiini.GitRepository {
		return &alumiini.GitRepository{ObjectMeta: metav1.ObjectMeta{Name: "apps", Namespace: "team-a"},
			Spec: alumiini.GitRepositorySpec{ServiceAccountName: serviceAccount, Prune: ptr.To(prune)}}
	}
	cases := []struct {
		name      string
		user      string
		repo      *alumiini.GitRepository
		forbidden bool
	}{
		{name: "a tenant, pruning as alumiini", user: "tenant", repo: repo("", true), forbidden: true},
		{name: "a tenant, pruning as a ServiceAccount", user: "tenant", repo: repo("deployer", true)},
		{name: "a tenant, nothing pruned", user: "tenant", repo: repo("", false)},
		{name: "an escalator", user: "platform", repo: repo("", true)},
		{name: "the namespace controller", user: "system:serviceaccount:kube-system:namespace-controller", repo: repo("", true)},
		// Its owners, which only an escalator may have named, are gone.
		{name: "the garbage collector", user: "system:serviceaccount:kube-system:generic-garbage-collector", repo: repo("", true)},
		{name: "a tenant, nothing pruned, break-glass denied", user: "tenant", repo: denyingBreakGlass(repo("", false)), forbidden: true},
		{name: "an escalator, nothing pruned, break-glass denied", user: "platform", repo: denyingBreakGlass(repo("", false))},
		{name: "a tenant, as a ServiceAccount, break-glass denied", user: "tenant", repo: denyingBreakGlass(repo("deployer", false))},
	}
	for _, tc := range cases {
		called := false
		next := func(context.Context, runtime.Object) error { called = true; return nil }
		err := r.guardDelete(next)(as(tc.user), tc.repo)
		if got := apierrors.IsForbidden(err); got != tc.forbidden || called == tc.forbidden {
			t.Errorf("%s: %v (admission called: %v), want forbidden=%v", tc.name, err, called, tc.forbidden)
		}
	}
}
