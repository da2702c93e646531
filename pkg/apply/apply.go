// Package apply puts a commit's objects into the cluster with server-side
// apply, all or nothing as far as the API allows: every object passes a
// server-side dry-run before any is written, Namespaces and CRDs go first,
// unchanged objects are not written, and objects that left the repository
// are pruned only when they still carry our label.
package apply

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	apipath "k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/manifest"
)

// Labels and annotations alumiini puts on what it applies.
const (
	LabelName       = "alumiini.false.systems/name"
	LabelNamespace  = "alumiini.false.systems/namespace"
	AnnotationOwner = "alumiini.false.systems/gitrepository"
	// AnnotationAdopted marks an object that existed before its
	// GitRepository took it over (spec.adopt): pruning deletes it like one
	// it created, except a Namespace, which it leaves.
	AnnotationAdopted = "alumiini.false.systems/adopted"
	// AnnotationSuspendHeal is the break-glass annotation: an object that
	// carries it with the value "true" is left alone entirely (not
	// updated from git, not corrected, not pruned) until it is removed,
	// unless its Owner has IgnoreBreakGlass.
	AnnotationSuspendHeal = "alumiini.false.systems/suspend-heal"
	// AnnotationPrune set to "disabled" (in git) keeps an object when it
	// leaves the repository or its GitRepository is deleted: it is
	// released (our labels taken off), not deleted, as Flux's
	// kustomize.toolkit.fluxcd.io/prune.
	AnnotationPrune = "alumiini.false.systems/prune"
	FieldManager    = "alumiini"
)

// Owner is the GitRepository objects are applied for.
type Owner struct {
	Namespace string
	Name      string
	// IgnoreBreakGlass: AnnotationSuspendHeal holds none of its objects
	// (its spec.drift.allowBreakGlass is false). On Owner, not Options,
	// because Delete (the GitRepository's finalizer) must honour it as
	// planning and pruning do.
	IgnoreBreakGlass bool
}

// Entry identifies an applied object in the inventory.
type Entry struct {
	Group     string
	Version   string
	Kind      string
	Namespace string
	Name      string
}

// GroupVersionKind is the kind the entry was applied as.
func (e Entry) GroupVersionKind() schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: e.Group, Version: e.Version, Kind: e.Kind}
}

func (e Entry) id() manifest.ID {
	return manifest.ID{Group: e.Group, Kind: e.Kind, Namespace: e.Namespace, Name: e.Name}
}

// Action says what a sync did to one object.
type Action string

// The actions.
const (
	Created    Action = "created"
	Configured Action = "configured"
	Unchanged  Action = "unchanged"
	Pruned     Action = "pruned"
	// Held objects carry AnnotationSuspendHeal and were left alone.
	Held Action = "held"
)

// Change is an object whose live state differs from the commit, in its
// values or in who owns them (OwnershipOnly).
type Change struct {
	Entry
	// Action is Created (it did not exist) or Configured.
	Action Action
	// Manager is who else wrote the object last, from managedFields.
	Manager string
	// OwnershipOnly: the object holds git's values, but another field
	// manager took fields alumiini applies; writing takes them back.
	OwnershipOnly bool
	// Written is false when Options.Write held the change back.
	Written bool
}

// Result is what one Apply did.
type Result struct {
	Created, Configured, Unchanged, Pruned int
	// Inventory lists every object of the commit, sorted, and the objects
	// that left it but are held.
	Inventory []Entry
	// Changes lists the objects that differed from the commit.
	Changes []Change
	// Held lists the objects left alone for AnnotationSuspendHeal.
	Held []Entry
	// Released lists the objects that left the commit and were kept for
	// AnnotationPrune, no longer managed.
	Released []Entry
	// KeptByGit lists the entries of Inventory whose manifest carries
	// AnnotationPrune "disabled" (the next prune's Options.KeptByGit).
	KeptByGit []Entry
	// PruneFailed lists the objects that could not be deleted; they stay
	// in the inventory, to be tried again.
	PruneFailed []Entry
}

// Options of one Apply.
type Options struct {
	// DefaultNamespace is given to namespaced objects that name none.
	DefaultNamespace string
	// Prune deletes objects of Previous that are no longer in the commit.
	Prune bool
	// Previous is the inventory of the last successful sync.
	Previous []Entry
	// KeptByGit are the entries of Previous whose manifest carried
	// AnnotationPrune "disabled" when last applied: leaving the commit,
	// they are released rather than deleted.
	KeptByGit []Entry
	// Force recreates objects whose immutable fields changed.
	Force bool
	// Adopt takes over existing objects that no GitRepository manages;
	// without it they fail the sync. Another GitRepository's objects are
	// never taken over.
	Adopt bool
	// Ignore names fields whose live value is kept: applying sets them to
	// what the cluster holds, so neither git nor a correction changes them
	// once the object exists.
	Ignore []IgnoreRule
	// Write, if set, decides for each object that differs from the commit
	// whether it is written now; a change it holds back is only reported.
	Write func(Change) bool
	// Observe, if set, is given every object of the commit as the cluster
	// holds it after the apply, for drift detection to remember. Objects not
	// written arrive as the live object, whole (*unstructured.Unstructured).
	// Written ones arrive as the write's answer: whole if ObserveWhole names
	// them or their metadata answer could not be read (see applyOne),
	// otherwise *metav1.PartialObjectMetadata. Observe and ObserveWhole are
	// called from several goroutines at once.
	Observe func(Entry, metav1.Object)
	// ObserveWhole, if set, names the objects Observe needs whole.
	ObserveWhole func(Entry) bool
	// BeforeWrites, if set, is called once, when every object the API can
	// check before anything is written has been dry-run (objects of kinds
	// that CRDs of the same commit define are dry-run after the CRDs are
	// written), before the first write; its error ends the Apply with
	// nothing written. A stopping controller refuses here, and lets an
	// Apply that got past it finish.
	BeforeWrites func() error
}

// Applier applies for one identity of the target cluster.
type Applier struct {
	Client dynamic.Interface
	// Metadata, for the same identity, asks for the dry-runs and writes whose
	// answer is read only for its metadata: kube-apiserver then encodes, and
	// alumiini decodes, the metadata alone. CPU profiles of `make bench`
	// syncing 1,000 new GitRepositories: the dry-runs took 0.14 CPU-s sampled
	// instead of 0.30, decoding their answers 0.01 instead of 0.16 (the
	// writes, asked as metadata: 0.22 CPU-s in a 15 s profile of run O in
	// docs/scale.md; not compared with whole answers).
	Metadata metadata.Interface
	Mapper   meta.ResettableRESTMapper
	// Discovery confirms, before pruning forgets an object, that its kind
	// is served in no version (see appliedMapping); without it, such an
	// object is kept and its prune fails.
	Discovery discovery.DiscoveryInterface
	// CRDTimeout bounds the wait for new CRDs to be established.
	CRDTimeout time.Duration
}

// New returns an Applier that acts as config's identity (impersonation
// included) in both its clients.
func New(config *rest.Config, mapper meta.ResettableRESTMapper) (*Applier, error) {
	client, err := dynamic.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("building the dynamic client: %w", err)
	}
	metadataClient, err := metadata.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("building the metadata client: %w", err)
	}
	discoveryClient, err := discovery.NewDiscoveryClientForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("building the discovery client: %w", err)
	}
	return &Applier{Client: client, Metadata: metadataClient, Mapper: mapper, Discovery: discoveryClient}, nil
}

// Error is an apply failure that names the object and why.
type Error struct {
	Object  string
	Reason  string
	Message string
	// Cause is the API's error, where there was one (for apierrors.IsForbidden
	// and the like).
	Cause error
	// Pruning is the inventory entry a prune failed on.
	Pruning *Entry
}

func (e *Error) Error() string { return e.Object + ": " + e.Message }
func (e *Error) Unwrap() error { return e.Cause }

// Reasons of apply errors.
const (
	ReasonDryRunFailed = "DryRunFailed"
	ReasonImmutable    = "ImmutableField"
	ReasonUnknownKind  = "UnknownKind"
	ReasonApplyFailed  = "ApplyFailed"
	ReasonPruneFailed  = "PruneFailed"
	ReasonCRDNotReady  = "CRDNotEstablished"
	// ReasonOwnedByAnother: the object is managed by another GitRepository.
	ReasonOwnedByAnother = "OwnedByAnother"
	// ReasonAdoptionRequired: the object exists, unmanaged, and spec.adopt is off.
	ReasonAdoptionRequired = "AdoptionRequired"
	// ReasonBreakGlassInGit: a manifest carries AnnotationSuspendHeal.
	ReasonBreakGlassInGit = "BreakGlassInGit"
)

type planned struct {
	obj      manifest.Object
	mapping  *meta.RESTMapping
	live     *unstructured.Unstructured
	action   Action
	recreate bool
	// ownershipOnly: the values are git's, but alumiini's field manager no
	// longer owns all it applies (ownershipLost).
	ownershipOnly bool
	// held back by Options.Write
	skip bool
}

func (p *planned) entry() Entry {
	gvk := p.obj.GroupVersionKind()
	return Entry{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: p.obj.GetNamespace(), Name: p.obj.GetName()}
}

// Apply makes the cluster hold objects for owner.
func (a *Applier) Apply(ctx context.Context, owner Owner, objects []manifest.Object, opts Options) (*Result, error) {
	crdKinds := definedKinds(objects)
	kinds := a.KindMapper()
	var first, rest, deferred []*planned
	for _, o := range objects {
		o = manifest.Object{Unstructured: o.DeepCopy(), Source: o.Source}
		label(o.Unstructured, owner)
		p := &planned{obj: o}
		mapping, err := kinds.Mapping(o.GroupVersionKind())
		switch {
		case err != nil && crdKinds[o.GroupVersionKind().GroupKind()]:
			deferred = append(deferred, p)
			continue
		case err != nil:
			return nil, &Error{Object: describe(o), Reason: ReasonUnknownKind, Message: err.Error()}
		}
		p.mapping = mapping
		scope(o.Unstructured, mapping, opts.DefaultNamespace)
		if isStageOne(o.GroupVersionKind().GroupKind()) {
			first = append(first, p)
		} else {
			rest = append(rest, p)
		}
	}

	known := map[manifest.ID]bool{}
	for _, e := range opts.Previous {
		known[e.id()] = true
	}
	// Everything the API can check now is dry-run before anything is written.
	pl := planner{owner: owner, known: known, force: opts.Force, adopt: opts.Adopt, ignore: opts.Ignore}
	if err := a.plan(ctx, append(append([]*planned{}, first...), rest...), pl); err != nil {
		return nil, err
	}
	if opts.BeforeWrites != nil {
		if err := opts.BeforeWrites(); err != nil {
			return nil, err
		}
	}
	result := &Result{}
	if err := a.write(ctx, first, result, opts); err != nil {
		return nil, err
	}
	if len(deferred) > 0 {
		if err := a.waitForCRDs(ctx, first); err != nil {
			return nil, err
		}
		kinds.readAgain() // the CRDs are established: discovery serves their kinds
		for _, p := range deferred {
			mapping, err := kinds.Mapping(p.obj.GroupVersionKind())
			if err != nil {
				return nil, &Error{Object: describe(p.obj), Reason: ReasonUnknownKind, Message: err.Error()}
			}
			p.mapping = mapping
			scope(p.obj.Unstructured, mapping, opts.DefaultNamespace)
		}
		if err := a.plan(ctx, deferred, pl); err != nil {
			return nil, err
		}
		rest = append(rest, deferred...)
	}
	if err := a.write(ctx, rest, result, opts); err != nil {
		return nil, err
	}

	all := append(first, rest...)
	current := map[manifest.ID]bool{}
	for _, p := range all {
		e := p.entry()
		result.Inventory = append(result.Inventory, e)
		current[e.id()] = true
		if p.obj.GetAnnotations()[AnnotationPrune] == "disabled" {
			result.KeptByGit = append(result.KeptByGit, e)
		}
	}
	if opts.Prune {
		var gone []Entry
		for _, e := range opts.Previous {
			if !current[e.id()] {
				gone = append(gone, e)
			}
		}
		kept := idSet(opts.KeptByGit)
		p, err := a.prune(ctx, owner, gone, kept)
		result.Pruned, result.Released, result.PruneFailed = p.deleted, p.released, p.failed
		// A held object stays in the inventory, to be pruned once released,
		// and so does one whose deletion failed, to be tried again; each
		// as git left it, kept or not.
		result.Held = append(result.Held, p.held...)
		for _, e := range append(slices.Clone(p.held), p.failed...) {
			result.Inventory = append(result.Inventory, e)
			if kept[e.id()] {
				result.KeptByGit = append(result.KeptByGit, e)
			}
		}
		if err != nil {
			sortEntries(result.Inventory)
			return result, err
		}
	}
	sortEntries(result.Inventory)
	return result, nil
}

// planner is what planning needs to know besides the objects.
type planner struct {
	owner Owner
	// known are the objects the last successful sync applied.
	known  map[manifest.ID]bool
	force  bool
	adopt  bool
	ignore []IgnoreRule
}

// plan dry-runs every apply, deciding which objects change and refusing to
// take over what is not ours; any refusal stops everything.
func (a *Applier) plan(ctx context.Context, ps []*planned, pl planner) error {
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	slots := make(chan struct{}, 8)
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			errs[i] = recovering(p, ReasonDryRunFailed, func() error { return a.planOne(ctx, p, pl) })
		}()
	}
	wg.Wait()
	return joinCapped(errs)
}

func (a *Applier) planOne(ctx context.Context, p *planned, pl planner) error {
	if _, ok := p.obj.GetAnnotations()[AnnotationSuspendHeal]; ok {
		// Holding an object is for whoever may change it by hand during an
		// incident; from git it would make a pushed object outlive its revert.
		return &Error{Object: describe(p.obj), Reason: ReasonBreakGlassInGit, Message: fmt.Sprintf(
			"carries %s, which is for operators to set on the live object, never in git", AnnotationSuspendHeal)}
	}
	client := a.resource(p)
	if !pl.known[manifest.IDOf(p.obj.Unstructured)] && a.isNew(ctx, p) {
		p.action = Created
		return nil
	}
	live, err := client.Get(ctx, p.obj.GetName(), metav1.GetOptions{})
	var ignored []ignoredField
	// Only objects that exist and are compared need these; alumiini's entry
	// is read once, for ignored paths and ownershipLost: a tenant may make
	// it large.
	limit := sync.OnceValue(func() int { return ownEntryLimit(p.obj.Unstructured) })
	own := sync.OnceValue(func() ownEntry { return ownFields(live, limit()) })
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return &Error{Object: describe(p.obj), Reason: ReasonDryRunFailed, Message: "reading the live object: " + apiMessage(err)}
	default:
		p.live = live
		if err := pl.claim(p); err != nil {
			return err
		}
		if heldByHand(live, pl.owner) {
			p.action = Held
			return nil
		}
		if pointers := ignoredTokens(p.obj.Unstructured, pl.ignore); len(pointers) > 0 {
			ignored = findIgnored(live.Object, p.obj.Object, own().fields, pointers)
			keepIgnored(p.obj.Unstructured, live, ignored)
		}
	}
	dry, err := dryRun(ctx, client, p)
	if err != nil {
		if isImmutable(err) {
			if pl.force {
				p.action, p.recreate = Configured, true
				return nil
			}
			return &Error{Object: describe(p.obj), Reason: ReasonImmutable,
				Message: apiMessage(err) + " (ask for a sync with force: true to recreate it)"}
		}
		return &Error{Object: describe(p.obj), Reason: ReasonDryRunFailed, Message: apiMessage(err)}
	}
	switch {
	case p.live == nil:
		p.action = Created
	case !sameObject(p.live, dry):
		p.action = Configured
	case ownershipLost(own(), ownFields(dry, limit()), ignored):
		p.action, p.ownershipOnly = Configured, true
	default:
		p.action = Unchanged
	}
	return nil
}

// isNew dry-runs an object the last sync did not apply, most likely a new
// one, before reading it: a dry-run that would create it answers without a
// resourceVersion, and then there is nothing to read, claim or compare. An
// object that exists, or a dry-run that fails, is planned the long way,
// which reads it first, so that whose it is is said before what is wrong.
func (a *Applier) isNew(ctx context.Context, p *planned) bool {
	if !p.namesArePathSegments() {
		return false // the long way, whose dynamic client refuses the name
	}
	data, err := json.Marshal(p.obj.Object)
	if err != nil {
		return false
	}
	dry, err := a.metadataResource(p).Patch(ctx, p.obj.GetName(), types.ApplyPatchType, data, dryRunOptions())
	return err == nil && dry.ResourceVersion == ""
}

func dryRun(ctx context.Context, client dynamic.ResourceInterface, p *planned) (*unstructured.Unstructured, error) {
	data, err := json.Marshal(p.obj.Object)
	if err != nil {
		return nil, err
	}
	return client.Patch(ctx, p.obj.GetName(), types.ApplyPatchType, data, dryRunOptions())
}

func applyOptions() metav1.PatchOptions {
	return metav1.PatchOptions{FieldManager: FieldManager, Force: ptrTrue()}
}

func dryRunOptions() metav1.PatchOptions {
	options := applyOptions()
	options.DryRun = []string{metav1.DryRunAll}
	return options
}

// claim decides whether the existing object p.live may be applied for the
// owner: it is ours if it carries our labels (or the last sync applied it and
// nobody else claimed it since); unmanaged objects are taken only with adopt;
// another GitRepository's never.
func (pl planner) claim(p *planned) error {
	labels := p.live.GetLabels()
	name, namespace := labels[LabelName], labels[LabelNamespace]
	switch {
	case name == pl.owner.Name && namespace == pl.owner.Namespace:
	case name != "" || namespace != "":
		return &Error{Object: describe(p.obj), Reason: ReasonOwnedByAnother, Message: fmt.Sprintf(
			"already exists and is managed by GitRepository %s/%s, not %s/%s; remove it from one of the two repositories",
			namespace, name, pl.owner.Namespace, pl.owner.Name)}
	case pl.known[manifest.IDOf(p.obj.Unstructured)]:
		// Our last sync applied it; someone stripped the labels since.
	case !pl.adopt:
		return &Error{Object: describe(p.obj), Reason: ReasonAdoptionRequired, Message: fmt.Sprintf(
			"already exists and was not created by GitRepository %s/%s; set spec.adopt: true to take it over "+
				"(it is then pruned like the objects this GitRepository created)", pl.owner.Namespace, pl.owner.Name)}
	default:
		markAdopted(p.obj.Unstructured)
		return nil
	}
	if p.live.GetAnnotations()[AnnotationAdopted] != "" {
		// Keep the mark: a server-side apply that stops setting a field removes it.
		markAdopted(p.obj.Unstructured)
	}
	return nil
}

// heldByHand: the object carries the break-glass annotation, set by someone
// other than alumiini (an annotation alumiini applied, from an older
// version's git, holds nothing), and its owner lets it hold.
func heldByHand(live *unstructured.Unstructured, owner Owner) bool {
	return !owner.IgnoreBreakGlass && live.GetAnnotations()[AnnotationSuspendHeal] == "true" &&
		!appliedByUs(live, AnnotationSuspendHeal)
}

func idSet(entries []Entry) map[manifest.ID]bool {
	set := make(map[manifest.ID]bool, len(entries))
	for _, e := range entries {
		set[e.id()] = true
	}
	return set
}

// appliedByUs reports whether alumiini's field manager owns the annotation.
func appliedByUs(live *unstructured.Unstructured, annotation string) bool {
	field := []byte(`"f:` + annotation + `"`)
	for _, m := range live.GetManagedFields() {
		if m.Manager == FieldManager && m.FieldsV1 != nil && bytes.Contains(m.FieldsV1.Raw, field) {
			return true
		}
	}
	return false
}

func markAdopted(u *unstructured.Unstructured) {
	annotations := u.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationAdopted] = "true"
	u.SetAnnotations(annotations)
}

// write applies the objects planned to change, several at once, unless
// opts.Write holds them back; unchanged ones cost nothing.
func (a *Applier) write(ctx context.Context, ps []*planned, result *Result, opts Options) error {
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	slots := make(chan struct{}, 8)
	for i, p := range ps {
		switch p.action {
		case Held:
			result.Held = append(result.Held, p.entry())
			continue
		case Unchanged:
			result.Unchanged++
			a.observe(opts, p, p.live)
			continue
		}
		change := Change{Entry: p.entry(), Action: p.action, OwnershipOnly: p.ownershipOnly, Written: true}
		if p.live != nil {
			change.Manager = lastForeignManager(p.live)
		}
		if opts.Write != nil && !opts.Write(change) {
			change.Written, p.skip = false, true
			result.Changes = append(result.Changes, change)
			continue
		}
		result.Changes = append(result.Changes, change)
		if p.action == Created {
			result.Created++
		} else {
			result.Configured++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			errs[i] = recovering(p, ReasonApplyFailed, func() error { return a.writeOne(ctx, p, opts) })
		}()
	}
	wg.Wait()
	return joinCapped(errs)
}

// writeOne writes p (recreating it if it must) and tells opts.Observe what
// was written.
func (a *Applier) writeOne(ctx context.Context, p *planned, opts Options) error {
	whole := opts.ObserveWhole != nil && opts.ObserveWhole(p.entry())
	var written metav1.Object
	var err error
	if p.recreate {
		written, err = a.recreate(ctx, p, whole)
	} else {
		written, err = a.applyOne(ctx, p, whole)
	}
	if err == nil {
		a.observe(opts, p, written)
	}
	return err
}

// recovering runs one object's part of an apply and turns a panic in it
// into that object's error. The apply's goroutines run outside the
// supervisor's recovery, and a panic in one would end the whole process,
// the API server and etcd with it, for every tenant.
func recovering(p *planned, reason string, do func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			klog.ErrorS(nil, "Panic while applying an object", "object", describe(p.obj), "panic", r, "stack", string(debug.Stack()))
			err = &Error{Object: describe(p.obj), Reason: reason, Message: "alumiini failed on it with an internal error; its log has the details"}
		}
	}()
	return do()
}

func (a *Applier) observe(opts Options, p *planned, obj metav1.Object) {
	if opts.Observe != nil && obj != nil {
		opts.Observe(p.entry(), obj)
	}
}

// lastForeignManager is the field manager other than alumiini's apply that
// wrote the object (not its status) most recently, or "" if none did; an
// update under alumiini's name is someone else's.
func lastForeignManager(obj metav1.Object) string {
	var last metav1.ManagedFieldsEntry
	for _, m := range obj.GetManagedFields() {
		if IsOwnApplyEntry(m) || m.Subresource == "status" || m.Time == nil {
			continue
		}
		if last.Time == nil || !m.Time.Before(last.Time) {
			last = m
		}
	}
	return last.Manager
}

// applyOne writes p and answers what was written: the whole object if
// whole, else its metadata, which is all drift detection reads and costs
// kube-apiserver and alumiini a fraction to encode and decode.
func (a *Applier) applyOne(ctx context.Context, p *planned, whole bool) (metav1.Object, error) {
	data, err := json.Marshal(p.obj.Object)
	if err != nil {
		return nil, err
	}
	// Planning refuses names that are not path segments; checked again
	// because the metadata client would put them into the path as they are.
	if !whole && p.namesArePathSegments() {
		written, err := a.metadataResource(p).Patch(ctx, p.obj.GetName(), types.ApplyPatchType, data, applyOptions())
		var apiError apierrors.APIStatus
		switch {
		case err == nil:
			return written, nil
		case errors.As(err, &apiError), ctx.Err() != nil:
			// Refused, or any answer that is an API error (a 5xx, a 429), or
			// out of time: reported, not made again.
			return nil, &Error{Object: describe(p.obj), Reason: ReasonApplyFailed, Message: apiMessage(err)}
		}
		// No answer, or one the metadata client cannot read, as an
		// aggregated API server not built on k8s.io/apiserver may send (a
		// Status, an object without metadata): the write may well have
		// happened. Applying it again changes nothing if it did, and its
		// whole answer reads.
	}
	written, err := a.resource(p).Patch(ctx, p.obj.GetName(), types.ApplyPatchType, data, applyOptions())
	if err != nil {
		return nil, &Error{Object: describe(p.obj), Reason: ReasonApplyFailed, Message: apiMessage(err)}
	}
	return written, nil
}

// namesArePathSegments: the object's name and namespace can be put into a
// request's path as they are, as the metadata client does (the dynamic one
// refuses names that cannot; manifest.Render refuses them too).
func (p *planned) namesArePathSegments() bool {
	namespace := namespaceIn(p.mapping, p.obj.GetNamespace())
	return len(apipath.IsValidPathSegmentName(p.obj.GetName())) == 0 &&
		(namespace == "" || len(apipath.IsValidPathSegmentName(namespace)) == 0)
}

// recreate deletes an object whose immutable fields changed and applies it anew.
func (a *Applier) recreate(ctx context.Context, p *planned, whole bool) (metav1.Object, error) {
	client := a.resource(p)
	// Background: the object goes at once and the garbage collector takes
	// its dependents, so the wait below does not hang on them.
	policy := metav1.DeletePropagationBackground
	if err := client.Delete(ctx, p.obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil && !apierrors.IsNotFound(err) {
		return nil, &Error{Object: describe(p.obj), Reason: ReasonApplyFailed, Message: "deleting to recreate: " + apiMessage(err)}
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := client.Get(ctx, p.obj.GetName(), metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		return nil, &Error{Object: describe(p.obj), Reason: ReasonApplyFailed, Message: "waiting for the old object to go: " + err.Error()}
	}
	return a.applyOne(ctx, p, whole)
}

// release takes our labels and annotations off an object we keep but no
// longer manage, so it reads as unmanaged again and another GitRepository
// may adopt it.
func release(ctx context.Context, client dynamic.ResourceInterface, live *unstructured.Unstructured) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": live.GetResourceVersion(),
		"labels":          map[string]any{LabelName: nil, LabelNamespace: nil},
		"annotations":     map[string]any{AnnotationOwner: nil, AnnotationAdopted: nil},
	}})
	if err != nil {
		return err
	}
	_, err = client.Patch(ctx, live.GetName(), types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	return err
}

func (a *Applier) waitForCRDs(ctx context.Context, ps []*planned) error {
	timeout := a.CRDTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	crds := a.Client.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	for _, p := range ps {
		if p.obj.GroupVersionKind().GroupKind() != crdKind {
			continue
		}
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
			crd, err := crds.Get(ctx, p.obj.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			conditions, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
			for _, c := range conditions {
				cond, _ := c.(map[string]interface{})
				if cond["type"] == "Established" && cond["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return &Error{Object: describe(p.obj), Reason: ReasonCRDNotReady, Message: fmt.Sprintf("not established within %s", timeout)}
		}
	}
	return nil
}

func (a *Applier) resource(p *planned) dynamic.ResourceInterface {
	return a.Client.Resource(p.mapping.Resource).Namespace(namespaceIn(p.mapping, p.obj.GetNamespace()))
}

// metadataResource is resource for requests whose answer is read only for
// its metadata.
func (a *Applier) metadataResource(p *planned) metadata.ResourceInterface {
	return a.Metadata.Resource(p.mapping.Resource).Namespace(namespaceIn(p.mapping, p.obj.GetNamespace()))
}

// namespaceIn is namespace for a namespaced kind and "" (the cluster) for
// others; both clients leave "" out of the path.
func namespaceIn(mapping *meta.RESTMapping, namespace string) string {
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		return namespace
	}
	return ""
}

var (
	crdKind       = schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}
	namespaceKind = schema.GroupKind{Kind: "Namespace"}
)

func isStageOne(gk schema.GroupKind) bool { return gk == crdKind || gk == namespaceKind }

// definedKinds returns the kinds the CRDs among objects define.
func definedKinds(objects []manifest.Object) map[schema.GroupKind]bool {
	kinds := map[schema.GroupKind]bool{}
	for _, o := range objects {
		if o.GroupVersionKind().GroupKind() != crdKind {
			continue
		}
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		kinds[schema.GroupKind{Group: group, Kind: kind}] = true
	}
	return kinds
}

func label(u *unstructured.Unstructured, owner Owner) {
	labels := u.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelName] = owner.Name
	labels[LabelNamespace] = owner.Namespace
	u.SetLabels(labels)
	annotations := u.GetAnnotations()
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationOwner] = owner.Namespace + "/" + owner.Name
	u.SetAnnotations(annotations)
}

func scope(u *unstructured.Unstructured, mapping *meta.RESTMapping, defaultNamespace string) {
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		if u.GetNamespace() == "" {
			u.SetNamespace(defaultNamespace)
		}
		return
	}
	u.SetNamespace("")
}

// sameObject compares a live object with what applying would make of it,
// ignoring what a write would change by itself, and the status, which
// controllers may change between the read and the dry-run.
func sameObject(live, dry *unstructured.Unstructured) bool {
	a, b := live.DeepCopy(), dry.DeepCopy()
	for _, u := range []*unstructured.Unstructured{a, b} {
		u.SetManagedFields(nil)
		u.SetResourceVersion("")
		u.SetGeneration(0)
		delete(u.Object, "status")
	}
	return apiequality.Semantic.DeepEqual(a.Object, b.Object)
}

func isImmutable(err error) bool {
	if !apierrors.IsInvalid(err) {
		return false
	}
	return strings.Contains(err.Error(), "immutable")
}

// maxAPIMessageBytes bounds what an object's error keeps of the API's
// message. kube-apiserver quotes invalid values (from git) in it and
// admission webhooks write what they like: one such message filled the
// condition's whole budget, pushing out the other failed objects, and a
// failed deletion logs its error uncut.
const maxAPIMessageBytes = 1024

// apiMessage is the API's own message, without the client's prefixes, cut
// to maxAPIMessageBytes.
func apiMessage(err error) string {
	msg := err.Error()
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Message != "" {
		msg = status.Status().Message
	}
	if len(msg) <= maxAPIMessageBytes {
		return msg
	}
	cut := maxAPIMessageBytes
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut-- // not inside a rune
	}
	return msg[:cut] + fmt.Sprintf("… (%d bytes cut)", len(msg)-cut)
}

func describe(o manifest.Object) string {
	return fmt.Sprintf("%s (from %s)", manifest.IDOf(o.Unstructured), o.Source)
}

func sortEntries(entries []Entry) {
	slices.SortFunc(entries, func(a, b Entry) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Kind, b.Kind),
			cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}

func ptrTrue() *bool                  { t := true; return &t }
func ptrUID(uid types.UID) *types.UID { return &uid }
