package gitrepository

import (
	"context"
	"fmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"slices"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
	"github.com/falsesystems/alumiini/pkg/apis/alumiini/validation"
)

// Strategy governs creates, updates and deletes of GitRepositories.
type Strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
	// PruneFinalizer, when set, is added at create to a GitRepository with
	// prune: true, saving the controller a write per new GitRepository. Only
	// a server whose controller runs sets it: nothing else would remove it.
	PruneFinalizer string
	// Identity decides who may leave spec.serviceAccountName empty.
	Identity IdentityPolicy
}

// NewStrategy returns the strategy for the main resource.
func NewStrategy(typer runtime.ObjectTyper) Strategy {
	return Strategy{ObjectTyper: typer, NameGenerator: names.SimpleNameGenerator}
}

// NamespaceScoped is true: a GitRepository lives in a namespace.
func (Strategy) NamespaceScoped() bool { return true }

// GetResetFields keeps server-side apply of the main resource from owning
// status, which only the status subresource writes.
func (Strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"alumiini.false.systems/v1alpha1": fieldpath.NewSet(fieldpath.MakePathOrDie("status")),
	}
}

// PrepareForCreate clears status, which only the controller writes, except
// for the phase, Pending until the first sync, with Reconciling true, so
// kstatus tools read a new GitRepository as in progress rather than current;
// and starts the generation at 1.
func (s Strategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	repo := obj.(*alumiini.GitRepository)
	repo.Status = alumiini.GitRepositoryStatus{Phase: alumiini.PhasePending, Conditions: []metav1.Condition{{
		Type: alumiini.ConditionReconciling, Status: metav1.ConditionTrue, Reason: "Pending",
		Message: "waiting for the first sync", LastTransitionTime: metav1.Now(),
	}}}
	repo.Generation = 1
	if s.PruneFinalizer != "" && (repo.Spec.Prune == nil || *repo.Spec.Prune) && !slices.Contains(repo.Finalizers, s.PruneFinalizer) {
		repo.Finalizers = append(repo.Finalizers, s.PruneFinalizer)
	}
}

// PrepareForUpdate keeps the stored status and bumps the generation when the
// spec changes, so the controller can tell a status that describes an old spec.
func (Strategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	newRepo := obj.(*alumiini.GitRepository)
	oldRepo := old.(*alumiini.GitRepository)
	newRepo.Status = oldRepo.Status
	dropLeftoverBranch(&newRepo.Spec, &oldRepo.Spec)
	if !apiequality.Semantic.DeepEqual(newRepo.Spec, oldRepo.Spec) {
		newRepo.Generation = oldRepo.Generation + 1
	}
}

// dropLeftoverBranch clears a branch that only survived from the old object
// when the update pins a tag or commit. The branch is usually the defaulted
// "main", which no apply or patch owns and so none removes; without this,
// switching a repository to a tag would be refused for setting two refs.
func dropLeftoverBranch(spec, old *alumiini.GitRepositorySpec) {
	pinsNow := spec.Tag != "" || spec.Commit != ""
	pinnedBefore := old.Tag != "" || old.Commit != ""
	if pinsNow && !pinnedBefore && spec.Branch == old.Branch {
		spec.Branch = ""
	}
}

// Validate checks a new GitRepository, and that its writer may give it the
// identity it asks for.
func (s Strategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	repo := obj.(*alumiini.GitRepository)
	errs := validation.ValidateGitRepository(repo)
	errs = append(errs, s.Identity.Check(ctx, repo, nil)...)
	return append(errs, s.Identity.CheckSecret(ctx, repo, nil)...)
}

// WarningsOnCreate returns no warnings.
func (Strategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string { return nil }

// AllowCreateOnUpdate is false: an update of a missing GitRepository is NotFound.
func (Strategy) AllowCreateOnUpdate(ctx context.Context) bool { return false }

// AllowUnconditionalUpdate lets a PUT without resourceVersion overwrite, as
// kubectl replace expects.
func (Strategy) AllowUnconditionalUpdate(ctx context.Context) bool { return true }

// Canonicalize does nothing: there is no alternative form to normalise.
func (Strategy) Canonicalize(obj runtime.Object) {}

// ValidateUpdate checks an update of a GitRepository, and that a changed spec
// keeps an identity its writer may give.
func (s Strategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	repo, oldRepo := obj.(*alumiini.GitRepository), old.(*alumiini.GitRepository)
	errs := validation.ValidateGitRepositoryUpdate(repo, oldRepo)
	errs = append(errs, s.Identity.Check(ctx, repo, oldRepo)...)
	errs = append(errs, s.Identity.CheckOwnersKept(repo, oldRepo)...)
	return append(errs, s.Identity.CheckSecret(ctx, repo, oldRepo)...)
}

// WarningsOnUpdate warns of a suspension an update keeps where only those
// who may escalate may end it (see IdentityPolicy.SuspensionKept).
func (s Strategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	if warning := s.Identity.SuspensionKept(obj.(*alumiini.GitRepository), old.(*alumiini.GitRepository)); warning != "" {
		return []string{warning}
	}
	return nil
}

// StatusStrategy governs writes through the status subresource.
type StatusStrategy struct {
	Strategy
}

// NewStatusStrategy returns the strategy for the status subresource.
func NewStatusStrategy(strategy Strategy) StatusStrategy {
	return StatusStrategy{strategy}
}

// GetResetFields keeps server-side apply through status from owning the spec
// and metadata it cannot change.
func (StatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		"alumiini.false.systems/v1alpha1": fieldpath.NewSet(
			fieldpath.MakePathOrDie("spec"),
			fieldpath.MakePathOrDie("metadata", "labels"),
			fieldpath.MakePathOrDie("metadata", "annotations"),
		),
	}
}

// PrepareForUpdate keeps everything but status as stored.
func (StatusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	newRepo := obj.(*alumiini.GitRepository)
	oldRepo := old.(*alumiini.GitRepository)
	newRepo.Spec = oldRepo.Spec
	newRepo.Labels = oldRepo.Labels
	newRepo.Annotations = oldRepo.Annotations
	newRepo.Finalizers = oldRepo.Finalizers
	newRepo.OwnerReferences = oldRepo.OwnerReferences
}

// ValidateUpdate checks a status write, and its writer.
func (s StatusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	errs := validation.ValidateGitRepositoryStatusUpdate(obj.(*alumiini.GitRepository), old.(*alumiini.GitRepository))
	return append(errs, s.Identity.CheckStatusWriter(ctx)...)
}

// WarningsOnUpdate returns no warnings.
func (StatusStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// GetAttrs returns the labels and selectable fields of a GitRepository.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	repo, ok := obj.(*alumiini.GitRepository)
	if !ok {
		return nil, nil, fmt.Errorf("given object is a %T, not a GitRepository", obj)
	}
	return labels.Set(repo.Labels), SelectableFields(repo), nil
}

// SelectableFields returns the fields a field selector can match: the object
// metadata ones, and spec.url so tools can find every GitRepository of a URL.
func SelectableFields(repo *alumiini.GitRepository) fields.Set {
	set := generic.ObjectMetaFieldsSet(&repo.ObjectMeta, true)
	set["spec.url"] = repo.Spec.URL
	return set
}

// Matcher is the predicate the store filters lists and watches with.
func Matcher(label labels.Selector, field fields.Selector) storage.SelectionPredicate {
	return storage.SelectionPredicate{Label: label, Field: field, GetAttrs: GetAttrs}
}
