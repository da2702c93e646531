package gitrepository

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
)

// escalators allows "escalate" on gitrepositories to the named users only,
// and records what it was asked.
type escalators struct {
	users map[string]bool
	asked []authorizer.Attributes
}

func (e *escalators) Authorize(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	e.asked = append(e.asked, a)
	if a.GetVerb() == VerbEscalate && a.GetResource() == "gitrepositories" && a.GetAPIGroup() == alumiini.GroupName &&
		e.users[a.GetUser().GetName()] {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

func as(name string) context.Context {
	ctx := genericapirequest.WithNamespace(context.Background(), "default")
	return genericapirequest.WithUser(ctx, &user.DefaultInfo{Name: name})
}

func TestOnlyEscalatorsMayLeaveServiceAccountEmpty(t *testing.T) {
	withAccount := func(r *alumiini.GitRepository) { r.Spec.ServiceAccountName = "deployer" }
	cases := []struct {
		name      string
		user      string
		policy    func(*IdentityPolicy)
		mutate    func(*alumiini.GitRepository)
		wantError bool
	}{
		{name: "a tenant without a service account", user: "tenant", wantError: true},
		{name: "a tenant with a service account", user: "tenant", mutate: withAccount},
		{name: "an escalator without a service account", user: "platform"},
		{name: "the default account stands in", user: "tenant", policy: func(p *IdentityPolicy) { p.DefaultServiceAccount = "gitops" }},
		{name: "no authorizer fails closed", user: "platform", policy: func(p *IdentityPolicy) { p.Authorizer = nil }, wantError: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStrategy(runtime.NewScheme())
			s.Identity = IdentityPolicy{Authorizer: authorizer.AuthorizerFunc((&escalators{users: map[string]bool{"platform": true}}).Authorize)}
			if tc.policy != nil {
				tc.policy(&s.Identity)
			}
			r := repo()
			if tc.mutate != nil {
				tc.mutate(r)
			}
			errs := s.Validate(as(tc.user), r)
			if got := len(errs) > 0; got != tc.wantError {
				t.Fatalf("errors %v, want error=%v", errs, tc.wantError)
			}
			if tc.wantError && (errs[0].Field != "spec.serviceAccountName" || !strings.Contains(errs[0].Detail, "alumiini's own identity")) {
				t.Errorf("the error must name spec.serviceAccountName and say why: %v", errs)
			}
		})
	}
}

func TestUpdatesOfAnAdminsGitRepository(t *testing.T) {
	authz := &escalators{users: map[string]bool{"platform": true}}
	s := NewStrategy(runtime.NewScheme())
	s.Identity = IdentityPolicy{Authorizer: authorizer.AuthorizerFunc(authz.Authorize)}
	admins := repo() // written by an escalator, applies as alumiini
	admins.Spec.ServiceAccountName = ""

	cases := []struct {
		name      string
		mutate    func(*alumiini.GitRepository)
		wantError bool
	}{
		{name: "a label only", mutate: func(r *alumiini.GitRepository) { r.Labels = map[string]string{"team": "a"} }},
		{name: "suspend only", mutate: func(r *alumiini.GitRepository) { r.Spec.Suspend = true }},
		{name: "a new url", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "https://evil.example.com/r.git" }, wantError: true},
		{name: "a new path", mutate: func(r *alumiini.GitRepository) { r.Spec.Path = "cluster-admin" }, wantError: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			updated := admins.DeepCopy()
			tc.mutate(updated)
			errs := s.ValidateUpdate(as("tenant"), updated, admins)
			if got := len(errs) > 0; got != tc.wantError {
				t.Fatalf("errors %v, want error=%v", errs, tc.wantError)
			}
		})
	}

	// A tenant may not clear a serviceAccountName an admin set.
	confined := repo()
	confined.Spec.ServiceAccountName = "deployer"
	cleared := confined.DeepCopy()
	cleared.Spec.ServiceAccountName = ""
	if errs := s.ValidateUpdate(as("tenant"), cleared, confined); len(errs) == 0 {
		t.Fatal("a tenant cleared spec.serviceAccountName")
	}
	last := authz.asked[len(authz.asked)-1]
	if last.GetNamespace() != "default" || last.GetName() != "demo" || !last.IsResourceRequest() {
		t.Errorf("the access review asked about %+v", last)
	}
}
