package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/falsesystems/alumiini/pkg/manifest"
)

// pruned is what one prune did with each entry.
type pruned struct {
	deleted  int
	held     []Entry // AnnotationSuspendHeal
	released []Entry // AnnotationPrune: disabled, or an adopted Namespace
	failed   []Entry
}

// pruneOutcome is what became of one entry.
type pruneOutcome int

const (
	pruneGone     pruneOutcome = iota // not there, or not ours any more
	pruneDeleted                      // deleted now
	pruneHeld                         // left alone by hand
	pruneReleased                     // kept, our labels taken off
)

// Delete removes the entries that still carry owner's label and returns how
// many it deleted. An object someone else has taken over is left alone, and
// so is one carrying AnnotationSuspendHeal (unless owner.IgnoreBreakGlass);
// those of keptByGit (their
// manifest carried AnnotationPrune "disabled") and an adopted Namespace (it
// held more than this repository put there) are released instead.
func (a *Applier) Delete(ctx context.Context, owner Owner, entries, keptByGit []Entry) (int, error) {
	p, err := a.prune(ctx, owner, entries, idSet(keptByGit))
	return p.deleted, err
}

// prune is Delete, saying what it did with each entry. It goes on past an
// entry it fails on, so one stuck object does not keep the others; the
// error names every failure (the first ten in full).
func (a *Applier) prune(ctx context.Context, owner Owner, entries []Entry, keptByGit map[manifest.ID]bool) (pruned, error) {
	var p pruned
	var failures []*Error
	kinds := a.pruneKinds()
	for _, e := range entries {
		outcome, err := a.pruneOne(ctx, kinds, owner, e, keptByGit[e.id()])
		if err != nil {
			p.failed = append(p.failed, e)
			failures = append(failures, err)
			continue
		}
		switch outcome {
		case pruneDeleted:
			p.deleted++
		case pruneHeld:
			p.held = append(p.held, e)
		case pruneReleased:
			p.released = append(p.released, e)
		}
	}
	if len(failures) == 0 {
		return p, nil
	}
	return p, pruneError(failures)
}

// pruneError is one error for every failed deletion: the first's object,
// cause and entry (for errors.As and apierrors), and each message.
func pruneError(failures []*Error) *Error {
	first := *failures[0]
	if len(failures) == 1 {
		return &first
	}
	messages := make([]string, 0, min(len(failures), maxErrors))
	for _, f := range failures[:min(len(failures), maxErrors)] {
		messages = append(messages, f.Error())
	}
	message := fmt.Sprintf("%d objects could not be deleted and stay in the inventory: %s", len(failures), strings.Join(messages, "; "))
	if len(failures) > maxErrors {
		message += fmt.Sprintf("; and %d more", len(failures)-maxErrors)
	}
	first.Message = message
	first.Object = "prune"
	return &first
}

func (a *Applier) pruneOne(ctx context.Context, kinds *pruneKinds, owner Owner, e Entry, keptByGit bool) (pruneOutcome, *Error) {
	fail := func(message string, cause error) *Error {
		return &Error{Object: e.id().String(), Reason: ReasonPruneFailed, Message: message, Cause: cause, Pruning: &e}
	}
	client, live, err := a.getApplied(ctx, kinds, e)
	if errors.Is(err, errKindGone) || apierrors.IsNotFound(err) {
		return pruneGone, nil
	}
	if err != nil {
		return pruneGone, fail(apiMessage(err), err)
	}
	labels := live.GetLabels()
	if labels[LabelName] != owner.Name || labels[LabelNamespace] != owner.Namespace {
		return pruneGone, nil
	}
	if heldByHand(live, owner) {
		return pruneHeld, nil
	}
	annotations := live.GetAnnotations()
	if keptByGit || e.GroupVersionKind().GroupKind() == namespaceKind && annotations[AnnotationAdopted] != "" {
		if err := release(ctx, client, live); err != nil {
			return pruneGone, fail("releasing it instead of deleting it: "+apiMessage(err), err)
		}
		return pruneReleased, nil
	}
	policy := metav1.DeletePropagationBackground
	err = client.Delete(ctx, e.Name, metav1.DeleteOptions{
		PropagationPolicy: &policy,
		Preconditions:     &metav1.Preconditions{UID: ptrUID(live.GetUID())},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return pruneGone, fail(apiMessage(err), err)
	}
	return pruneDeleted, nil
}
