package gitrepository

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/utils/ptr"

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
	denying := admins.DeepCopy()
	denying.Spec.Drift = &alumiini.DriftSpec{AllowBreakGlass: ptr.To(false)}
	suspendedDenying := denying.DeepCopy()
	suspendedDenying.Spec.Suspend = true
	finalized := admins.DeepCopy()
	finalized.Finalizers = []string{alumiini.FinalizerPrune, "orphan"}

	cases := []struct {
		name   string
		old    *alumiini.GitRepository
		mutate func(*alumiini.GitRepository)
		// wantError names the field refused, "" for none.
		wantError string
	}{
		{name: "a label only", old: admins, mutate: func(r *alumiini.GitRepository) { r.Labels = map[string]string{"team": "a"} }},
		{name: "suspend only", old: admins, mutate: func(r *alumiini.GitRepository) { r.Spec.Suspend = true }},
		{name: "a new url", old: admins, mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "https://evil.example.com/r.git" },
			wantError: "spec.serviceAccountName"},
		{name: "a new path", old: admins, mutate: func(r *alumiini.GitRepository) { r.Spec.Path = "cluster-admin" },
			wantError: "spec.serviceAccountName"},
		{name: "break-glass denied: allowed again", old: denying, mutate: func(r *alumiini.GitRepository) { r.Spec.Drift.AllowBreakGlass = nil },
			wantError: "spec.serviceAccountName"},
		// Suspended, it would keep its objects from git as the annotation would.
		{name: "break-glass denied: suspend", old: denying, mutate: func(r *alumiini.GitRepository) { r.Spec.Suspend = true },
			wantError: "spec.suspend"},
		// With --shard-selector, a label may take it out of every shard;
		// which labels, the process serving the request cannot know.
		{name: "break-glass denied: a label", old: denying, mutate: func(r *alumiini.GitRepository) { r.Labels = map[string]string{"team": "a"} },
			wantError: "metadata.labels"},
		{name: "break-glass denied: an annotation only", old: denying, mutate: func(r *alumiini.GitRepository) {
			r.Annotations = map[string]string{"note": "x"}
		}},
		// Only an escalator may have suspended it: not the tenant's to end.
		{name: "break-glass denied: resume", old: suspendedDenying, mutate: func(r *alumiini.GitRepository) { r.Spec.Suspend = false },
			wantError: "spec.suspend"},
		{name: "break-glass denied, suspended: an annotation only", old: suspendedDenying, mutate: func(r *alumiini.GitRepository) {
			r.Annotations = map[string]string{"note": "x"}
		}},
		// Where break-glass is allowed, a tenant who suspended it resumes it.
		{name: "resume", old: suspendedCopy(admins), mutate: func(r *alumiini.GitRepository) { r.Spec.Suspend = false }},
		// Naming a ServiceAccount takes over what the escalator put in place.
		{name: "a ServiceAccount and a new url", old: admins, mutate: func(r *alumiini.GitRepository) {
			r.Spec.ServiceAccountName, r.Spec.URL = "deployer", "https://evil.example.com/r.git"
		}, wantError: "spec.serviceAccountName"},
		{name: "break-glass denied: a ServiceAccount and suspend", old: denying, mutate: func(r *alumiini.GitRepository) {
			r.Spec.ServiceAccountName, r.Spec.Suspend = "deployer", true
		}, wantError: "spec.serviceAccountName"},
		// Its deletion would then skip pruning.
		{name: "the prune finalizer removed", old: finalized, mutate: func(r *alumiini.GitRepository) { r.Finalizers = nil },
			wantError: "metadata.finalizers"},
		{name: "another finalizer removed", old: finalized, mutate: func(r *alumiini.GitRepository) {
			r.Finalizers = []string{alumiini.FinalizerPrune}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			updated := tc.old.DeepCopy()
			tc.mutate(updated)
			errs := s.ValidateUpdate(as("tenant"), updated, tc.old)
			if len(errs) != min(len(tc.wantError), 1) || len(errs) == 1 && errs[0].Field != tc.wantError {
				t.Fatalf("errors %v, want one on %q", errs, tc.wantError)
			}
		})
	}
	// An escalator may suspend it, and move it to another shard.
	suspended := denying.DeepCopy()
	suspended.Spec.Suspend = true
	if errs := s.ValidateUpdate(as("platform"), suspended, denying); len(errs) > 0 {
		t.Errorf("an escalator may not suspend a GitRepository that denies break-glass: %v", errs)
	}
	if errs := s.ValidateUpdate(as("platform"), denying.DeepCopy(), suspended); len(errs) > 0 {
		t.Errorf("an escalator may not resume a GitRepository that denies break-glass: %v", errs)
	}
	resharded := denying.DeepCopy()
	resharded.Labels = map[string]string{"shard": "b"}
	if errs := s.ValidateUpdate(as("platform"), resharded, denying); len(errs) > 0 {
		t.Errorf("an escalator may not relabel a GitRepository that denies break-glass: %v", errs)
	}
	if errs := s.ValidateUpdate(as("tenant"), resharded, denying); len(errs) != 1 ||
		!strings.Contains(errs[0].Detail, "one matching none stops it as suspending would") {
		t.Errorf("a tenant moving it to another shard: %v, want the refusal to say why", errs)
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
	if last.GetNamespace() != "" || last.GetName() != "" || !last.IsResourceRequest() {
		t.Errorf("the access review asked about %+v; want escalate on all gitrepositories cluster-wide, "+
			"as a namespace's grant is not enough (and one answer per user can be cached)", last)
	}

	// Pointing ownerReferences at something the tenant may delete would let
	// the garbage collector delete it for them.
	owned := admins.DeepCopy()
	owned.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "mine", UID: "1"}}
	if errs := s.ValidateUpdate(as("tenant"), owned, admins); len(errs) == 0 {
		t.Error("a tenant set ownerReferences on a GitRepository that applies as alumiini")
	}
	// The garbage collector takes them off when their owner is deleted
	// orphaning its dependents; it may not add or change one.
	const collector = "system:serviceaccount:kube-system:generic-garbage-collector"
	if errs := s.ValidateUpdate(as("tenant"), admins.DeepCopy(), owned); len(errs) == 0 {
		t.Error("a tenant took an escalator's ownerReferences off")
	}
	if errs := s.ValidateUpdate(as(collector), admins.DeepCopy(), owned); len(errs) > 0 {
		t.Errorf("the garbage collector orphaning it: %v", errs)
	}
	if errs := s.ValidateUpdate(as(collector), owned, admins); len(errs) == 0 {
		t.Error("the garbage collector's identity added an owner reference")
	}
	changed := owned.DeepCopy()
	changed.OwnerReferences[0].Name = "another"
	if errs := s.ValidateUpdate(as(collector), changed, owned); len(errs) == 0 {
		t.Error("the garbage collector's identity changed an owner reference")
	}
	// Untangling a foreground deletion, it turns blockOwnerDeletion off.
	blocking := owned.DeepCopy()
	blocking.OwnerReferences[0].BlockOwnerDeletion = ptr.To(true)
	unblocked := owned.DeepCopy()
	unblocked.OwnerReferences[0].BlockOwnerDeletion = ptr.To(false)
	if errs := s.ValidateUpdate(as(collector), unblocked, blocking); len(errs) > 0 {
		t.Errorf("the garbage collector unblocking its owner's deletion: %v", errs)
	}
	if errs := s.ValidateUpdate(as(collector), blocking, unblocked); len(errs) == 0 {
		t.Error("the garbage collector's identity turned blockOwnerDeletion on")
	}
}

// TestNamingASecretNeedsTheRightToReadIt: the controller sends a Secret's
// credentials to spec.url, so a user who may not read the Secret may not
// name it, nor point a GitRepository that names it at another URL.
func TestNamingASecretNeedsTheRightToReadIt(t *testing.T) {
	readers := authorizer.AuthorizerFunc(func(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
		if a.GetVerb() == "get" && a.GetResource() == "secrets" && a.GetName() == "creds" && a.GetNamespace() == "default" &&
			a.GetUser().GetName() == "owner" {
			return authorizer.DecisionAllow, "", nil
		}
		return authorizer.DecisionNoOpinion, "", nil
	})
	p := IdentityPolicy{Authorizer: readers}
	withSecret := repo()
	withSecret.Spec.SecretRef = &alumiini.LocalObjectReference{Name: "creds"}
	if errs := p.CheckSecret(as("owner"), withSecret, nil); len(errs) != 0 {
		t.Fatalf("the Secret's reader: %v", errs)
	}
	errs := p.CheckSecret(as("tenant"), withSecret, nil)
	if len(errs) != 1 || errs[0].Field != "spec.secretRef.name" {
		t.Fatalf("a user who may not read it: %v", errs)
	}
	repointed := withSecret.DeepCopy()
	repointed.Spec.URL = "https://attacker.example.com/r.git"
	if errs := p.CheckSecret(as("tenant"), repointed, withSecret); len(errs) == 0 {
		t.Fatal("a user who may not read the Secret sent it to another URL")
	}
	relabelled := withSecret.DeepCopy()
	relabelled.Spec.Interval = "10m"
	if errs := p.CheckSecret(as("tenant"), relabelled, withSecret); len(errs) != 0 {
		t.Fatalf("a change that keeps the url and Secret: %v", errs)
	}

	// The webhook's Secret decides which pushes trigger syncs: the same rule.
	withHook := repo()
	withHook.Spec.Webhook = &alumiini.WebhookSpec{SecretRef: alumiini.LocalObjectReference{Name: "creds"}}
	if errs := p.CheckSecret(as("owner"), withHook, nil); len(errs) != 0 {
		t.Fatalf("the webhook Secret's reader: %v", errs)
	}
	errs = p.CheckSecret(as("tenant"), withHook, nil)
	if len(errs) != 1 || errs[0].Field != "spec.webhook.secretRef.name" {
		t.Fatalf("a user who may not read the webhook Secret: %v", errs)
	}
}

// TestOnlyEscalatorsWriteStatus: the status holds what pruning trusts and
// the sync requests to run; alumiini's controller writes it as
// system:masters (which the server's authorizer allows everything).
func TestOnlyEscalatorsWriteStatus(t *testing.T) {
	authz := &escalators{users: map[string]bool{"platform": true}}
	s := NewStrategy(runtime.NewScheme())
	s.Identity = IdentityPolicy{Authorizer: authorizer.AuthorizerFunc(authz.Authorize)}
	status := NewStatusStrategy(s)
	old := repo()
	emptied := old.DeepCopy()
	emptied.Status.Inventory = &alumiini.Inventory{}
	errs := status.ValidateUpdate(as("tenant"), emptied, old)
	if len(errs) != 1 || errs[0].Field != "status" || !strings.Contains(errs[0].Detail, "escalate") {
		t.Errorf("a tenant's status write: %v, want it refused on status naming escalate", errs)
	}
	if errs := status.ValidateUpdate(as("platform"), emptied, old); len(errs) > 0 {
		t.Errorf("an escalator's status write: %v", errs)
	}
}

func suspendedCopy(r *alumiini.GitRepository) *alumiini.GitRepository {
	r = r.DeepCopy()
	r.Spec.Suspend = true
	return r
}

// TestDenyingBreakGlassWarnsOfASuspensionKept: a tenant suspended a
// GitRepository that allowed break-glass; the admin who denies it, without
// touching spec.suspend, is told it stays suspended, which only they may
// now end. Other writes say nothing.
func TestDenyingBreakGlassWarnsOfASuspensionKept(t *testing.T) {
	s := NewStrategy(runtime.NewScheme())
	s.Identity = IdentityPolicy{Authorizer: authorizer.AuthorizerFunc((&escalators{users: map[string]bool{"platform": true}}).Authorize)}
	admins := repo()
	admins.Spec.ServiceAccountName = ""
	suspendedByTenant := suspendedCopy(admins)
	denying := suspendedByTenant.DeepCopy()
	denying.Spec.Drift = &alumiini.DriftSpec{AllowBreakGlass: ptr.To(false)}
	warnings := s.WarningsOnUpdate(as("platform"), denying, suspendedByTenant)
	if len(warnings) != 1 || !strings.Contains(warnings[0], "spec.suspend is still true") {
		t.Errorf("denying break-glass of a suspended GitRepository: warnings %q", warnings)
	}
	confined := suspendedCopy(repo()) // a ServiceAccount's: its tenant resumes it
	confined.Spec.ServiceAccountName = "deployer"
	confinedDenying := confined.DeepCopy()
	confinedDenying.Spec.Drift = &alumiini.DriftSpec{AllowBreakGlass: ptr.To(false)}
	for name, update := range map[string][2]*alumiini.GitRepository{
		"denying break-glass of one not suspended": {func() *alumiini.GitRepository {
			r := admins.DeepCopy()
			r.Spec.Drift = denying.Spec.Drift
			return r
		}(), admins},
		"an annotation on one already denying":    {denying, denying},
		"denying break-glass as a ServiceAccount": {confinedDenying, confined},
	} {
		if warnings := s.WarningsOnUpdate(as("platform"), update[0], update[1]); len(warnings) > 0 {
			t.Errorf("%s: warnings %q", name, warnings)
		}
	}
}

// TestTakingOverRefusesOwnerReferencesKept: a tenant's GitRepository,
// owned by a ConfigMap of theirs, which an escalator makes apply as
// alumiini: kept, the owner reference would let the tenant have the garbage
// collector delete it, pruning as alumiini, by deleting the ConfigMap. So
// the escalator's update must take it off; it may name owners again after.
func TestTakingOverRefusesOwnerReferencesKept(t *testing.T) {
	s := NewStrategy(runtime.NewScheme())
	s.Identity = IdentityPolicy{Authorizer: authorizer.AuthorizerFunc((&escalators{users: map[string]bool{"platform": true}}).Authorize)}
	tenants := repo()
	tenants.Spec.ServiceAccountName = "deployer"
	tenants.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "mine", UID: "1"}}
	taken := tenants.DeepCopy()
	taken.Spec.ServiceAccountName = ""
	if errs := s.ValidateUpdate(as("platform"), taken, tenants); len(errs) != 1 || errs[0].Field != "metadata.ownerReferences" {
		t.Errorf("taking over an owned GitRepository, keeping its owners: %v, want refused on metadata.ownerReferences", errs)
	}
	unowned := taken.DeepCopy()
	unowned.OwnerReferences = nil
	if errs := s.ValidateUpdate(as("platform"), unowned, tenants); len(errs) > 0 {
		t.Errorf("taking over, owners taken off: %v", errs)
	}
	owned := unowned.DeepCopy()
	owned.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "platforms", UID: "2"}}
	if errs := s.ValidateUpdate(as("platform"), owned, unowned); len(errs) > 0 {
		t.Errorf("an escalator naming owners after: %v", errs)
	}
}
