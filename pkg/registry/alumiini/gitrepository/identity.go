package gitrepository

import (
	"context"
	"fmt"
	"slices"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
)

// VerbEscalate on gitrepositories lets a user write a GitRepository without
// spec.serviceAccountName, which alumiini then applies with its own identity.
// It is the verb Kubernetes uses on roles for the same idea: granting more
// than one holds. The ClusterRole that grants it is shipped bound to nobody;
// cluster-admins have it through "*".
const VerbEscalate = "escalate"

// IdentityPolicy decides who may make a GitRepository apply with alumiini's
// own identity. A GitRepository with a serviceAccountName is applied as that
// ServiceAccount of its own namespace, so RBAC bounds it as it bounds a pod
// the writer could run; one without is checked here, at admission, with the
// requesting user in hand.
type IdentityPolicy struct {
	// Authorizer answers the SubjectAccessReview; without one every
	// GitRepository needs a serviceAccountName (fail closed).
	Authorizer authorizer.Authorizer
	// DefaultServiceAccount, when set, is what a GitRepository without
	// serviceAccountName applies as; nothing then runs as alumiini itself and
	// no check is needed.
	DefaultServiceAccount string
}

// Check refuses, unless the user may escalate, a create leaving
// serviceAccountName empty, and these updates of a GitRepository that
// applied with alumiini's own identity (whose writer could escalate):
// any spec change but suspend, naming a ServiceAccount included (that
// takes over what it put in place); removing the prune finalizer; changing
// ownerReferences (the garbage collector may take them off); and, where
// spec.drift.allowBreakGlass is false,
// suspending or resuming it, or changing its labels. old is nil on
// create. The sync subresource asks it too, for requests that pick a
// revision or force, as they change what runs as much as a spec edit does.
func (p IdentityPolicy) Check(ctx context.Context, repo, old *alumiini.GitRepository) field.ErrorList {
	wasAlumiinis := old != nil && old.Spec.ServiceAccountName == ""
	if p.DefaultServiceAccount != "" || repo.Spec.ServiceAccountName != "" && !wasAlumiinis {
		return nil
	}
	refused := identityRefusal{fld: field.NewPath("spec", "serviceAccountName"), why: ""}
	switch {
	case !wasAlumiinis: // a create, or a ServiceAccount cleared: as a create
	case repo.Spec.ServiceAccountName != "":
		refused.why = "it applies with alumiini's own identity, and naming a ServiceAccount would take over what it applied"
	case slices.Contains(old.Finalizers, alumiini.FinalizerPrune) && !slices.Contains(repo.Finalizers, alumiini.FinalizerPrune):
		// Its deletion would then skip the prune the finalizer does (the
		// controller, which removes it, writes as system:masters).
		refused = identityRefusal{fld: field.NewPath("metadata", "finalizers"),
			why: "removing " + alumiini.FinalizerPrune + " would let its deletion skip pruning what it applied"}
	case !onlySuspendChanged(repo.Spec, old.Spec):
		refused.why = "changing the spec of a GitRepository that applies with alumiini's own identity changes what alumiini applies"
	case !apiequality.Semantic.DeepEqual(repo.OwnerReferences, old.OwnerReferences) &&
		!(IsGarbageCollector(ctx) && loosenedOnly(repo.OwnerReferences, old.OwnerReferences)):
		// Pointing them at something the user may delete would let the
		// garbage collector delete the GitRepository, and its finalizer
		// prune as alumiini.
		refused = identityRefusal{fld: field.NewPath("metadata", "ownerReferences"),
			why: "owner references decide when the garbage collector deletes it, pruning as alumiini"}
	case !AllowsBreakGlass(old.Spec) && !apiequality.Semantic.DeepEqual(repo.Labels, old.Labels):
		// Any label, not only those of this process's --shard-selector:
		// whichever replica serves the request, shards may select on
		// others, and a process serving the API alone selects on none.
		refused = identityRefusal{fld: field.NewPath("metadata", "labels"),
			why: "its labels decide which --shard-selector shard syncs it, and one matching none stops it as suspending would, " +
				"and spec.drift.allowBreakGlass is false"}
	case AllowsBreakGlass(old.Spec) || repo.Spec.Suspend == old.Spec.Suspend:
		// Suspending only stops syncing, and resuming starts it again; the
		// spec that runs was checked already.
		return nil
	case repo.Spec.Suspend:
		// But one that denies break-glass must keep its objects from
		// whoever may change them, which a suspension would not.
		refused = identityRefusal{fld: field.NewPath("spec", "suspend"),
			why: "spec.drift.allowBreakGlass is false, and suspending would keep the objects from git as the annotation would"}
	default:
		// So a suspension is an escalator's (an incident's hold, a bad
		// commit in git), or one they kept when they denied break-glass
		// (SuspensionKept warned them), not the tenant's to end.
		refused = identityRefusal{fld: field.NewPath("spec", "suspend"),
			why: "spec.drift.allowBreakGlass is false, so only those who may escalate suspend or resume it"}
	}
	requester, ok := genericapirequest.UserFrom(ctx)
	if !ok {
		return field.ErrorList{field.Forbidden(refused.fld, "no user in the request to check")}
	}
	if p.Authorizer == nil {
		return field.ErrorList{field.Forbidden(refused.fld, "required: this server has no authorizer to check who may apply with alumiini's own identity")}
	}
	allowed, detail := p.mayEscalate(ctx, requester)
	if allowed {
		return nil
	}
	if refused.why != "" {
		return field.ErrorList{field.Forbidden(refused.fld, fmt.Sprintf(
			"%s: for a GitRepository applying with alumiini's own identity this needs %q on gitrepositories.%s "+
				"cluster-wide, and user %q does not have it%s",
			refused.why, VerbEscalate, alumiini.GroupName, requester.GetName(), detail))}
	}
	return field.ErrorList{field.Forbidden(refused.fld, fmt.Sprintf(
		"required: without it the objects would be applied with alumiini's own identity, which needs %q on "+
			"gitrepositories.%s cluster-wide, and user %q does not have it%s; name a ServiceAccount of namespace %q whose "+
			"RBAC allows what the repository holds",
		VerbEscalate, alumiini.GroupName, requester.GetName(), detail, repo.Namespace))}
}

// appliesAsAlumiini reports whether repo applies with alumiini's own
// identity: it names no ServiceAccount, and none is the default.
func (p IdentityPolicy) appliesAsAlumiini(repo *alumiini.GitRepository) bool {
	return p.DefaultServiceAccount == "" && repo.Spec.ServiceAccountName == ""
}

// SuspensionKept warns the writer of an update that makes a suspended
// GitRepository one whose suspension only escalators may end (it now
// applies as alumiini and denies break-glass), since whoever suspended it
// may not have been one: its objects stay kept from git until they resume
// it.
func (p IdentityPolicy) SuspensionKept(repo, old *alumiini.GitRepository) string {
	locked := func(r *alumiini.GitRepository) bool { return p.appliesAsAlumiini(r) && !AllowsBreakGlass(r.Spec) }
	if !repo.Spec.Suspend || !locked(repo) || locked(old) {
		return ""
	}
	return "spec.suspend is still true, perhaps set by someone who may not escalate: while it is, its objects are kept " +
		"from git, which spec.drift.allowBreakGlass: false is meant to prevent, and only those who may escalate may " +
		"set it to false"
}

// garbageCollectors are the names kube-controller-manager's garbage
// collector acts under. It deletes a GitRepository whose owners are gone,
// and takes owner references off one whose owner was deleted orphaning its
// dependents; refused, it would retry for ever, and an owner deleted in
// the foreground, or orphaning, would stay Terminating. It acts on owner
// references, which on a GitRepository applying as alumiini only
// escalators may set.
var garbageCollectors = controllerNames("generic-garbage-collector")

// namespaceControllers delete everything in a namespace being deleted. The
// user who deleted the namespace had a cluster-wide right to; refusing the
// controller would leave the namespace Terminating for ever.
var namespaceControllers = controllerNames("namespace-controller")

// controllerNames are the names a kube-controller-manager controller acts
// under: its ServiceAccount's with --use-service-account-credentials, the
// manager's own without.
func controllerNames(serviceAccount string) map[string]bool {
	return map[string]bool{"system:serviceaccount:kube-system:" + serviceAccount: true, "system:kube-controller-manager": true}
}

// IsGarbageCollector reports whether the request is the garbage
// collector's.
func IsGarbageCollector(ctx context.Context) bool { return requestedBy(ctx, garbageCollectors) }

// IsNamespaceController reports whether the request is the namespace
// controller's.
func IsNamespaceController(ctx context.Context) bool { return requestedBy(ctx, namespaceControllers) }

func requestedBy(ctx context.Context, names map[string]bool) bool {
	requester, ok := genericapirequest.UserFrom(ctx)
	return ok && names[requester.GetName()]
}

// loosenedOnly reports whether refs is old with references taken out, or
// their blockOwnerDeletion turned off: what the garbage collector does,
// orphaning dependents or untangling a foreground deletion.
func loosenedOnly(refs, old []metav1.OwnerReference) bool {
	if len(refs) > len(old) {
		return false
	}
	for _, ref := range refs {
		unblocks := ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion
		if !slices.ContainsFunc(old, func(o metav1.OwnerReference) bool {
			if unblocks {
				o.BlockOwnerDeletion = ref.BlockOwnerDeletion
			}
			return apiequality.Semantic.DeepEqual(o, ref)
		}) {
			return false
		}
	}
	return true
}

// CheckOwnersKept refuses an update that makes a GitRepository with owner
// references apply as alumiini while keeping them, whoever asks: a tenant
// may have set them while it applied as their ServiceAccount, pointing at
// something they may delete, and the garbage collector would then delete
// it, pruning as alumiini. Taking them off in the same request passes;
// an escalator may name owners again afterwards.
func (p IdentityPolicy) CheckOwnersKept(repo, old *alumiini.GitRepository) field.ErrorList {
	if len(repo.OwnerReferences) == 0 || !p.appliesAsAlumiini(repo) || p.appliesAsAlumiini(old) ||
		!apiequality.Semantic.DeepEqual(repo.OwnerReferences, old.OwnerReferences) {
		return nil
	}
	return field.ErrorList{field.Forbidden(field.NewPath("metadata", "ownerReferences"),
		"they were set while it applied as a ServiceAccount, perhaps by someone who may not escalate, and would decide when "+
			"the garbage collector deletes it, pruning as alumiini: take them off in this request (and name owners again after, if needed)")}
}

// identityRefusal is the field a refused Check names, and why the change
// needs escalate when it is not the creation of a GitRepository without a
// ServiceAccount.
type identityRefusal struct {
	fld *field.Path
	why string
}

// CheckStatusWriter refuses a status write by anyone who may not escalate.
// Status is the controller's record, which it writes as system:masters: its
// inventory is what pruning and deletion act on, and its pending sync
// request's revision and force what the next sync runs, so writing it
// would bypass the checks of spec changes and sync requests.
func (p IdentityPolicy) CheckStatusWriter(ctx context.Context) field.ErrorList {
	fld := field.NewPath("status")
	requester, ok := genericapirequest.UserFrom(ctx)
	if !ok || p.Authorizer == nil {
		return field.ErrorList{field.Forbidden(fld, "cannot check who may write the status")}
	}
	allowed, detail := p.mayEscalate(ctx, requester)
	if allowed {
		return nil
	}
	return field.ErrorList{field.Forbidden(fld, fmt.Sprintf(
		"alumiini's controller writes the status (what was applied, which pruning trusts, and the sync requests to run); "+
			"anyone else needs %q on gitrepositories.%s cluster-wide, and user %q does not have it%s",
		VerbEscalate, alumiini.GroupName, requester.GetName(), detail))}
}

// mayEscalate asks whether who has verb escalate on gitrepositories,
// cluster-wide: alumiini's identity reaches every namespace, so a
// namespace-scoped grant (even a Role of "*" on "*") is not enough. And
// without the name: the grant is for all GitRepositories, and the answer is
// then the same for each, so the delegating authorizer's cache (10 s) serves
// a user's burst of creates from one SubjectAccessReview rather than one per
// GitRepository. The second result says why not, if it can.
func (p IdentityPolicy) mayEscalate(ctx context.Context, who user.Info) (bool, string) {
	return p.allows(ctx, authorizer.AttributesRecord{
		User:            who,
		Verb:            VerbEscalate,
		APIGroup:        alumiini.GroupName,
		Resource:        "gitrepositories",
		ResourceRequest: true,
	})
}

// AllowsBreakGlass reports whether the break-glass annotation may hold the
// objects spec applies (spec.drift.allowBreakGlass, true by default).
func AllowsBreakGlass(spec alumiini.GitRepositorySpec) bool {
	return spec.Drift == nil || spec.Drift.AllowBreakGlass == nil || *spec.Drift.AllowBreakGlass
}

func onlySuspendChanged(spec, old alumiini.GitRepositorySpec) bool {
	spec.Suspend = old.Suspend
	return apiequality.Semantic.DeepEqual(spec, old)
}

// CheckSecret refuses a GitRepository whose writer may not read a Secret it
// names, when it is new or the reference changed: the controller reads
// spec.secretRef and sends its credentials to spec.url (so a new url counts as
// a new reference), and it reads spec.webhook.secretRef to decide which pushes
// may trigger syncs. Naming a Secret is reading it. old is nil on create.
func (p IdentityPolicy) CheckSecret(ctx context.Context, repo, old *alumiini.GitRepository) field.ErrorList {
	var allErrs field.ErrorList
	if ref := repo.Spec.SecretRef; ref != nil && (old == nil || old.Spec.SecretRef == nil ||
		*old.Spec.SecretRef != *ref || old.Spec.URL != repo.Spec.URL) {
		allErrs = append(allErrs, p.checkSecretReader(ctx, repo.Namespace, ref.Name, field.NewPath("spec", "secretRef", "name"),
			"and alumiini would send its credentials to spec.url on their behalf")...)
	}
	if hook := repo.Spec.Webhook; hook != nil && (old == nil || old.Spec.Webhook == nil || *old.Spec.Webhook != *hook) {
		allErrs = append(allErrs, p.checkSecretReader(ctx, repo.Namespace, hook.SecretRef.Name, field.NewPath("spec", "webhook", "secretRef", "name"),
			"and pushes signed with it would trigger this GitRepository")...)
	}
	return allErrs
}

func (p IdentityPolicy) checkSecretReader(ctx context.Context, namespace, name string, fld *field.Path, consequence string) field.ErrorList {
	user, ok := genericapirequest.UserFrom(ctx)
	if !ok || p.Authorizer == nil {
		return field.ErrorList{field.Forbidden(fld, "cannot check who may read the Secret")}
	}
	allowed, detail := p.allows(ctx, authorizer.AttributesRecord{
		User:            user,
		Verb:            "get",
		Namespace:       namespace,
		Resource:        "secrets",
		Name:            name,
		ResourceRequest: true,
	})
	if allowed {
		return nil
	}
	return field.ErrorList{field.Forbidden(fld, fmt.Sprintf("user %q may not read Secret %q in namespace %q%s, %s",
		user.GetName(), name, namespace, detail, consequence))}
}

// allows asks the authorizer; when it says no, detail is the why it gave,
// ready to append to a message.
func (p IdentityPolicy) allows(ctx context.Context, attributes authorizer.AttributesRecord) (bool, string) {
	decision, reason, err := p.Authorizer.Authorize(ctx, attributes)
	switch {
	case decision == authorizer.DecisionAllow:
		return true, ""
	case err != nil:
		return false, fmt.Sprintf(" (the authorization check failed: %v)", err)
	case reason != "":
		return false, fmt.Sprintf(" (%s)", reason)
	}
	return false, ""
}
