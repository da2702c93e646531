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

func TestWaitersPerUserAreBounded(t *testing.T) {
	l := newWaiterLimit(2)
	var releases []func()
	for range 2 {
		release, err := l.acquire(as("impatient"))
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	if _, err := l.acquire(as("impatient")); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("a third waiter: %v, want 429", err)
	}
	if release, err := l.acquire(as("someone-else")); err != nil {
		t.Fatalf("another user is not limited by the first: %v", err)
	} else {
		release()
	}
	releases[0]()
	if _, err := l.acquire(as("impatient")); err != nil {
		t.Fatalf("after one finished: %v", err)
	}
}
