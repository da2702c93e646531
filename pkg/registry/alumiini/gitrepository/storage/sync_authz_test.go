package storage

import (
	"context"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
)

// updaters may update gitrepositories; nobody else may.
type updaters map[string]bool

func (u updaters) Authorize(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if a.GetVerb() == "update" && a.GetResource() == "gitrepositories" && a.GetSubresource() == "" && u[a.GetUser().GetName()] {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

func as(name string) context.Context {
	ctx := genericapirequest.WithNamespace(context.Background(), "team-a")
	return genericapirequest.WithUser(ctx, &user.DefaultInfo{Name: name})
}

// TestRevisionAndForceNeedUpdateRights covers the RBAC half; the e2e test
// TestATenantCannotRepointAnAdminsGitRepository covers the escalate half.
func TestRevisionAndForceNeedUpdateRights(t *testing.T) {
	r := &SyncREST{authorizer: authorizer.AuthorizerFunc(updaters{"maintainer": true}.Authorize)}
	cases := []struct {
		user      string
		spec      alumiini.GitRepositorySyncRequestSpec
		forbidden bool
	}{
		{user: "ci-bot", spec: alumiini.GitRepositorySyncRequestSpec{}},
		{user: "ci-bot", spec: alumiini.GitRepositorySyncRequestSpec{Wait: true}},
		{user: "ci-bot", spec: alumiini.GitRepositorySyncRequestSpec{Revision: "unreviewed-branch"}, forbidden: true},
		{user: "ci-bot", spec: alumiini.GitRepositorySyncRequestSpec{Force: true}, forbidden: true},
		{user: "maintainer", spec: alumiini.GitRepositorySyncRequestSpec{Revision: "v1.2.3", Force: true}},
	}
	for _, tc := range cases {
		req := &alumiini.GitRepositorySyncRequest{Spec: tc.spec}
		check := r.authorizeUpdate
		if tc.spec.Revision == "" && !tc.spec.Force {
			check = r.authorizeSpec // a plain request asks nothing more
		}
		err := check(as(tc.user), "apps", req)
		if got := apierrors.IsForbidden(err); got != tc.forbidden {
			t.Errorf("%s with %+v: %v, want forbidden=%v", tc.user, tc.spec, err, tc.forbidden)
		}
	}
}
