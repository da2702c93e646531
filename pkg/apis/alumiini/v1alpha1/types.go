package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +genclient
// +genclient:method=Sync,verb=create,subresource=sync,input=GitRepositorySyncRequest,result=GitRepositorySyncRequest
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// GitRepository keeps the cluster equal to what a path of a git repository
// holds. alumiini syncs it on a timer, on request (the sync subresource), on a
// push when its webhook receiver is on, and, with spec.drift.mode Correct (the
// default), when someone changes the applied objects by hand.
type GitRepository struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says which repository, ref and path to sync, and how.
	Spec GitRepositorySpec `json:"spec"`
	// Status is what the controller observed and did. Read-only.
	// +optional
	Status GitRepositoryStatus `json:"status,omitempty"`
}

// GitRepositorySpec says which repository, ref and path to sync, and how.
type GitRepositorySpec struct {
	// URL of the git repository: https://, http://, ssh:// or scp-like
	// user@host:path (whose user has no "/" or "@" and whose path does not
	// start with "\": git would read those as a local path or another
	// host). Credentials never go in the URL; use secretRef.
	URL string `json:"url"`
	// Branch to follow. Defaults to "main" unless a tag or commit is pinned.
	// At most one of branch, tag and commit may be set.
	// +optional
	Branch string `json:"branch,omitempty"`
	// Tag to pin instead of following a branch.
	// +optional
	Tag string `json:"tag,omitempty"`
	// Commit (40 lower-case hexadecimal characters) to pin instead of following a branch.
	// A pinned commit is fetched once and never polled again.
	// +optional
	Commit string `json:"commit,omitempty"`
	// Path inside the repository whose manifests are applied: relative, without
	// ".." segments. Defaults to the repository root.
	// +optional
	Path string `json:"path,omitempty"`
	// Interval between polls of the remote, as a Go duration (10s to 24h).
	// Defaults to 5m. GitRepositories of one URL and interval poll at the
	// same instants and share one ref listing, so a poll comes half an
	// interval to one and a half after the last. A signed push to the
	// webhook receiver, when it is on, syncs at once regardless (pushes within
	// a second of one another fold into one more sync).
	// +optional
	Interval string `json:"interval,omitempty"`
	// Timeout for one sync, as a Go duration (1s to 1h): two budgets of it,
	// one for the fetch and render, one for the apply; waiting for a free
	// apply slot while many GitRepositories sync at once counts in neither.
	// Defaults to 1m.
	// +optional
	Timeout string `json:"timeout,omitempty"`
	// TargetNamespace is given to namespaced objects that name no namespace.
	// Defaults to the GitRepository's own namespace.
	// +optional
	TargetNamespace string `json:"targetNamespace,omitempty"`
	// SecretRef names a Secret in this namespace with the credentials for the
	// repository: username and password, or bearerToken, for HTTPS (optionally
	// ca.crt); identity and known_hosts for SSH. Refused with an http:// URL:
	// credentials are never sent in plain text.
	// +optional
	SecretRef *LocalObjectReference `json:"secretRef,omitempty"`
	// Prune deletes objects that were applied earlier and have left the
	// repository, and what was applied when the GitRepository is deleted:
	// only objects still labelled for this GitRepository, and never a
	// Namespace it adopted. An object whose manifest carries the annotation
	// alumiini.false.systems/prune: disabled is kept (released) instead. A
	// commit that renders no object at all fails rather than prune
	// everything, unless the path holds a file named .alumiini-allow-empty.
	// An object that cannot be deleted stays listed, to be tried again.
	// Defaults to true.
	// +optional
	Prune *bool `json:"prune,omitempty"`
	// Suspend stops syncing until it is set back to false.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
	// ServiceAccountName, in this namespace, whose identity the objects are
	// applied with, so a tenant can sync only what that account may change.
	// Leaving it empty applies with alumiini's own identity, which only a
	// user allowed to "escalate" on gitrepositories may ask for (the
	// ClusterRole alumiini:controller-identity), unless the server sets
	// --default-service-account.
	// +optional
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// RolloutRef names the Rollout, in the target namespace, that rolls a newly
	// applied revision out gradually: KULTA's (kulta.io, the default) or Argo
	// Rollouts' (argoproj.io). After each sync that applies, alumiini follows
	// it through a watch, with the GitRepository's identity, and reports it in
	// status.rollout and the RolledOut condition: True when it completes,
	// False when it fails or rolls back, or is still paused or progressing
	// past healthTimeout. With wait, Ready waits for RolledOut.
	// +optional
	RolloutRef *RolloutReference `json:"rolloutRef,omitempty"`
	// Adopt lets this GitRepository take over objects that already exist and
	// that no GitRepository manages; without it such an object fails the
	// sync. An object another GitRepository manages is never taken over.
	// Adopted objects are pruned like created ones, except Namespaces, which
	// are deleted only if this GitRepository created them.
	// +optional
	Adopt bool `json:"adopt,omitempty"`
	// Webhook authorizes push webhooks for this GitRepository.
	// +optional
	Webhook *WebhookSpec `json:"webhook,omitempty"`
	// Drift says what alumiini does when someone changes or deletes an
	// applied object by hand.
	// +optional
	Drift *DriftSpec `json:"drift,omitempty"`
	// Wait makes Ready wait, after each sync that applies, until every
	// applied object and every object of healthChecks is healthy by kstatus
	// rules (a Deployment rolled out, a StatefulSet ready, a Job complete, a
	// CRD established, anything with standard conditions), watched with the
	// identity the GitRepository applies as. The Healthy condition says how
	// it stands; past healthTimeout it is False (reason HealthTimeout) naming
	// each object not healthy. The next sync that applies (a new commit, a
	// spec change, a sync request) replaces the wait with its own. The wait
	// holds no apply slot. Defaults to false.
	// +optional
	Wait bool `json:"wait,omitempty"`
	// HealthTimeout bounds the wait, as a Go duration (1s to 1h). Defaults to
	// timeout.
	// +optional
	HealthTimeout string `json:"healthTimeout,omitempty"`
	// HealthChecks names more objects to wait for, such as one applied by
	// someone else; at most 32. Read with the GitRepository's identity.
	// +optional
	// +listType=atomic
	HealthChecks []HealthCheckReference `json:"healthChecks,omitempty"`
	// DependsOn names GitRepositories that must be Ready, at the commit they
	// last attempted, before this one syncs; until then Ready is False with
	// reason DependencyNotReady naming the one waited for, and when it
	// becomes Ready this one syncs at once. A dependency in another
	// namespace is only read (whether it is Ready), never changed. A cycle
	// is refused when it names this GitRepository itself, and reported
	// (reason DependencyCycle) otherwise. At most 32.
	// +optional
	// +listType=atomic
	DependsOn []DependencyReference `json:"dependsOn,omitempty"`
}

// DependencyReference names a GitRepository that must be Ready first.
type DependencyReference struct {
	// Name of the GitRepository.
	Name string `json:"name"`
	// Namespace of the GitRepository; defaults to this one's.
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// HealthCheckReference names an object a sync with wait waits for.
type HealthCheckReference struct {
	// APIVersion of the object, e.g. apps/v1.
	APIVersion string `json:"apiVersion"`
	// Kind of the object, e.g. Deployment.
	Kind string `json:"kind"`
	// Name of the object.
	Name string `json:"name"`
	// Namespace of the object; defaults to the target namespace; ignored
	// for a cluster-scoped kind.
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// WebhookSpec authorizes push webhooks for one GitRepository.
type WebhookSpec struct {
	// SecretRef names a Secret in this namespace whose key "token" is the
	// webhook secret: a push signed with it (or, for GitLab, carrying it)
	// triggers the GitRepositories of this namespace that name this Secret
	// and follow the pushed repository and ref. Pushes signed with the
	// platform-wide secret (--webhook-secret) trigger them too.
	SecretRef LocalObjectReference `json:"secretRef"`
}

// DriftMode says what alumiini does about drift.
type DriftMode string

// The drift modes.
const (
	// DriftCorrect re-applies the git state of a drifted object.
	DriftCorrect DriftMode = "Correct"
	// DriftDetect reports drift in status, an Event and a metric, and
	// changes nothing.
	DriftDetect DriftMode = "Detect"
	// DriftIgnore neither looks for drift nor reports it; a sync of a new
	// commit still writes every object that differs from git.
	DriftIgnore DriftMode = "Ignore"
)

// DriftSpec says what alumiini does when an applied object is changed or
// deleted by someone else.
type DriftSpec struct {
	// Mode is Correct (re-apply the git state), Detect (report only; while
	// an object differs from git, Ready is False with reason Drifted) or
	// Ignore. Defaults to Correct. Drift is an object deleted, or a field
	// alumiini applied that differs from git; status.drift names the field
	// manager that wrote it last. Correct also re-applies at once an object
	// whose values match git but whose fields another manager took, so
	// that their next change is seen; Detect does not report that.
	// +optional
	Mode DriftMode `json:"mode,omitempty"`
	// HealGracePeriod delays the correction of a hand edit, as a Go duration
	// (0 to 24h), so an operator can hotfix and commit: the drift is reported
	// at once and corrected only when the period has passed. A commit that
	// changes the object meanwhile is applied at once. Defaults to 0. Grace
	// periods are kept in memory: after a restart of alumiini they start
	// over.
	// +optional
	HealGracePeriod string `json:"healGracePeriod,omitempty"`
	// Ignore lists fields alumiini neither corrects nor reports, such as the
	// replica count of a Deployment under an autoscaler (group apps, kind
	// Deployment, paths [/spec/replicas]). After an object is created, git
	// changes to these fields are not applied either: the live value is kept.
	// +optional
	// +listType=atomic
	Ignore []DriftIgnoreRule `json:"ignore,omitempty"`
	// AllowBreakGlass says whether the break-glass annotation
	// alumiini.false.systems/suspend-heal: "true", set by hand on a live
	// object, keeps that object from git. True (the default): it is not
	// corrected, not updated from git and not pruned until the annotation is
	// removed, and status.drift counts it as held. False: the annotation is
	// ignored, and the object is handled (by mode), updated, pruned and
	// deleted with this GitRepository like any other; suspending or
	// deleting this GitRepository then needs the rights to write it (for one
	// applying with alumiini's own identity, escalate). Set false where
	// people who may edit these objects but not this GitRepository (tenants,
	// for a platform's NetworkPolicy in their namespace) must not keep them
	// from git; hotfix through git, or within healGracePeriod, instead.
	// +optional
	AllowBreakGlass *bool `json:"allowBreakGlass,omitempty"`
}

// DriftIgnoreRule names fields of some objects that drift leaves alone.
type DriftIgnoreRule struct {
	// Group of the objects' kind, as in their apiVersion: apps for a
	// Deployment; empty only for the core group (ConfigMap, Service, …). A
	// rule matches only the group it names.
	// +optional
	Group string `json:"group,omitempty"`
	// Kind of the objects, e.g. Deployment.
	Kind string `json:"kind"`
	// Name of one object; empty for every object of the kind.
	// +optional
	Name string `json:"name,omitempty"`
	// Paths are JSON pointers (RFC 6901) to the fields, e.g. /spec/replicas,
	// or one label or annotation (/metadata/annotations/example.com~1owner).
	// A list index is a position in git's list:
	// /spec/template/spec/containers/0/image is the image of the container
	// git lists first, matched by name in the live object wherever it is
	// there, once alumiini has applied the object (before, and in a list
	// whose items have no name or key, such as args, the live object's
	// item at the same position). A path inside such a list still lets
	// alumiini re-apply the whole list when another writer changes it.
	// +listType=atomic
	Paths []string `json:"paths"`
}

// LocalObjectReference names an object in the GitRepository's namespace.
type LocalObjectReference struct {
	// Name of the object.
	Name string `json:"name"`
}

// RolloutReference names the Rollout a new revision is handed to.
type RolloutReference struct {
	// APIVersion of the Rollout: kulta.io/v1alpha1 (the default),
	// kulta.io/v1beta1 or argoproj.io/v1alpha1.
	// +optional
	APIVersion string `json:"apiVersion,omitempty"`
	// Kind of the Rollout: Rollout (the default).
	// +optional
	Kind string `json:"kind,omitempty"`
	// Name of the Rollout, in the target namespace.
	Name string `json:"name"`
}

// RolloutStatus is what alumiini last saw of the Rollout of spec.rolloutRef.
type RolloutStatus struct {
	// Phase of the Rollout: Initializing, Progressing, Paused, Completed or
	// Failed (an Argo Rollout's Healthy reads Completed, Degraded Failed).
	// +optional
	Phase string `json:"phase,omitempty"`
	// Step is the canary step the Rollout is at (KULTA's currentStepIndex).
	// +optional
	Step *int32 `json:"step,omitempty"`
	// Weight is the share of traffic on the new revision, in percent.
	// +optional
	Weight *int32 `json:"weight,omitempty"`
	// Message is the Rollout's own, or why alumiini cannot follow it.
	// +optional
	Message string `json:"message,omitempty"`
	// ObservedAt is when alumiini saw this.
	ObservedAt metav1.Time `json:"observedAt"`
}

// GitRepositoryPhase is a one-word summary of where a GitRepository stands.
type GitRepositoryPhase string

// The phases a GitRepository passes through.
const (
	PhasePending   GitRepositoryPhase = "Pending"
	PhaseSyncing   GitRepositoryPhase = "Syncing"
	PhaseSynced    GitRepositoryPhase = "Synced"
	PhaseFailed    GitRepositoryPhase = "Failed"
	PhaseSuspended GitRepositoryPhase = "Suspended"
)

// Condition types, kstatus-compatible.
const (
	ConditionReady       = "Ready"
	ConditionReconciling = "Reconciling"
	ConditionStalled     = "Stalled"
	// ConditionHealthy, with spec.wait, says whether what the last sync
	// applied (and spec.healthChecks) is healthy by kstatus rules.
	ConditionHealthy = "Healthy"
	// ConditionRolledOut, with spec.rolloutRef, says whether the Rollout
	// completed for the last sync's revision.
	ConditionRolledOut = "RolledOut"
)

// GitRepositoryStatus is what the controller observed and did.
type GitRepositoryStatus struct {
	// ObservedGeneration is the metadata.generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase is Pending (created, not synced yet), Syncing (a commit is being
	// applied, shown after a second of it), Synced (the last sync applied its commit), Failed (the last
	// sync failed; the last good state stays applied, retried with backoff)
	// or Suspended.
	// +optional
	Phase GitRepositoryPhase `json:"phase,omitempty"`
	// LastSyncedCommit is the commit whose manifests were last applied in full.
	// +optional
	LastSyncedCommit string `json:"lastSyncedCommit,omitempty"`
	// LastSyncTime is when lastSyncedCommit was last applied (a spec change, a
	// sync request, a retry after a failure or the end of a suspension or a
	// dependency wait may apply the same commit again).
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
	// LastAttemptedCommit is the commit of the last sync, whether or not it succeeded.
	// +optional
	LastAttemptedCommit string `json:"lastAttemptedCommit,omitempty"`
	// Message says in words what happened last, and why a failure failed.
	// +optional
	Message string `json:"message,omitempty"`
	// Conditions: Ready, Reconciling and Stalled, as kstatus reads them, and
	// Healthy (with spec.wait) and RolledOut (with spec.rolloutRef). A sync in
	// progress, a health wait or a drift correction due is Reconciling; a
	// failed sync is Stalled until a sync succeeds, a health or Rollout
	// timeout or failure until a later sync or wait says otherwise, and drift
	// left so in Detect mode until the objects match git again.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Objects counts what the last sync did.
	// +optional
	Objects *ObjectCounts `json:"objects,omitempty"`
	// Inventory lists the objects applied from this repository, for pruning.
	// +optional
	Inventory *Inventory `json:"inventory,omitempty"`
	// PendingSyncRequest is the sync request accepted and not yet handled.
	// Only the sync subresource sets it.
	// +optional
	PendingSyncRequest *SyncRequestRecord `json:"pendingSyncRequest,omitempty"`
	// LastSyncRequest is the last sync request handled, with its result.
	// +optional
	LastSyncRequest *SyncRequestRecord `json:"lastSyncRequest,omitempty"`
	// LastPush is the last push webhook that triggered this GitRepository.
	// +optional
	LastPush *PushRecord `json:"lastPush,omitempty"`
	// Drift summarizes changes made to the applied objects by others.
	// +optional
	Drift *DriftStatus `json:"drift,omitempty"`
	// Rollout is what alumiini last saw of the Rollout of spec.rolloutRef.
	// +optional
	Rollout *RolloutStatus `json:"rollout,omitempty"`
	// Owner is the replica process (its --replica-name, then a per-process
	// id) that syncs this GitRepository when replicas share the work
	// (--share-work). A replica claims it here before it syncs, and clears
	// it once its worker has stopped, so that two never sync it at once.
	// +optional
	Owner string `json:"owner,omitempty"`
}

// PushRecord is a push webhook as received.
type PushRecord struct {
	// Provider is the webhook's sender: github, gitlab, gitea, bitbucket,
	// bitbucket-server or generic.
	Provider string `json:"provider"`
	// DeliveryID is the sender's id of the delivery, if it gave one.
	// +optional
	DeliveryID string `json:"deliveryID,omitempty"`
	// Ref that was pushed, e.g. refs/heads/main.
	// +optional
	Ref string `json:"ref,omitempty"`
	// Commit the push says the ref now points at.
	// +optional
	Commit string `json:"commit,omitempty"`
	// ReceivedAt is when alumiini received it.
	ReceivedAt metav1.Time `json:"receivedAt"`
}

// DriftStatus summarizes drift of the applied objects.
type DriftStatus struct {
	// Drifted counts the objects that differ from git now.
	// +optional
	Drifted int32 `json:"drifted,omitempty"`
	// Held counts the objects left alone because they carry
	// alumiini.false.systems/suspend-heal: "true" (none while
	// spec.drift.allowBreakGlass is false).
	// +optional
	Held int32 `json:"held,omitempty"`
	// LastDetected is when drift was last found.
	// +optional
	LastDetected *metav1.Time `json:"lastDetected,omitempty"`
	// LastCorrected is when drift was last corrected.
	// +optional
	LastCorrected *metav1.Time `json:"lastCorrected,omitempty"`
	// Objects lists the drifted and held objects, and those corrected in the
	// last 10 minutes (at most 50).
	// +optional
	// +listType=atomic
	Objects []DriftedObject `json:"objects,omitempty"`
}

// DriftState says where one drifted object stands.
type DriftState string

// The drift states.
const (
	// DriftStateDetected: the object differs from git; mode Detect leaves it so.
	DriftStateDetected DriftState = "Detected"
	// DriftStateCorrected: the object differed and the git state was re-applied.
	DriftStateCorrected DriftState = "Corrected"
	// DriftStateGracePeriod: the object differs and is corrected when
	// healGracePeriod has passed.
	DriftStateGracePeriod DriftState = "GracePeriod"
	// DriftStateBackingOff: another writer keeps changing the object back;
	// corrections wait longer each time.
	DriftStateBackingOff DriftState = "BackingOff"
	// DriftStateHeld: the object carries the break-glass annotation.
	DriftStateHeld DriftState = "Held"
)

// DriftedObject is one object that drifted or is held.
type DriftedObject struct {
	// Group of the object's kind; empty for the core group.
	// +optional
	Group string `json:"group,omitempty"`
	// Kind of the object.
	Kind string `json:"kind"`
	// Namespace of the object; empty when cluster-scoped.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Name of the object.
	Name string `json:"name"`
	// State is Detected, Corrected, GracePeriod, BackingOff or Held.
	State DriftState `json:"state"`
	// Manager is the field manager that last changed the object, when known.
	// +optional
	Manager string `json:"manager,omitempty"`
	// Deleted is true when the object had been deleted.
	// +optional
	Deleted bool `json:"deleted,omitempty"`
	// Since is when this drift was first seen.
	Since metav1.Time `json:"since"`
	// Message says what happened and what happens next.
	// +optional
	Message string `json:"message,omitempty"`
}

// ObjectCounts says what one sync did to the objects of a commit.
type ObjectCounts struct {
	// Created objects did not exist before.
	// +optional
	Created int32 `json:"created,omitempty"`
	// Configured objects existed and were changed.
	// +optional
	Configured int32 `json:"configured,omitempty"`
	// Unchanged objects already matched the repository and were not written.
	// +optional
	Unchanged int32 `json:"unchanged,omitempty"`
	// Pruned objects had left the repository and were deleted.
	// +optional
	Pruned int32 `json:"pruned,omitempty"`
}

// Inventory lists the objects a GitRepository applied.
type Inventory struct {
	// Entries, one per applied object, sorted.
	// +optional
	// +listType=atomic
	Entries []InventoryEntry `json:"entries,omitempty"`
}

// InventoryEntry identifies one applied object.
type InventoryEntry struct {
	// Group of the object's kind; empty for the core group.
	// +optional
	Group string `json:"group,omitempty"`
	// Version the object was applied at.
	Version string `json:"version"`
	// Kind of the object.
	Kind string `json:"kind"`
	// Namespace of the object; empty when cluster-scoped.
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// Name of the object.
	Name string `json:"name"`
	// PruneDisabled: the object's manifest carried
	// alumiini.false.systems/prune: disabled when it was last applied, so
	// it is released (kept, no longer managed) rather than deleted when it
	// leaves the repository or the GitRepository is deleted. Only this
	// record counts, not the live object's annotation, which anyone who may
	// patch the object could set.
	// +optional
	PruneDisabled bool `json:"pruneDisabled,omitempty"`
}

// SyncRequestRecord is a sync request as kept on its GitRepository: pending
// until the controller handles it, then carrying the result.
type SyncRequestRecord struct {
	// ID of the request, as answered by the sync subresource.
	ID string `json:"id"`
	// Revision asked for, if any: a commit, branch or tag.
	// +optional
	Revision string `json:"revision,omitempty"`
	// Force recreates objects whose immutable fields changed.
	// +optional
	Force bool `json:"force,omitempty"`
	// RequestedBy is the user who asked.
	// +optional
	RequestedBy string `json:"requestedBy,omitempty"`
	// AcceptedAt is when the sync subresource recorded the request.
	AcceptedAt metav1.Time `json:"acceptedAt"`
	// Rejoined is set when an equal request (or a push a replica handed
	// over) joined this one since the controller last began handling it;
	// the controller then handles it once more, so that a push made during
	// a sync is not missed.
	// +optional
	Rejoined bool `json:"rejoined,omitempty"`
	// HandledAt is when the controller finished the sync that handled it.
	// +optional
	HandledAt *metav1.Time `json:"handledAt,omitempty"`
	// Result of that sync.
	// +optional
	Result *SyncResult `json:"result,omitempty"`
}

// SyncResult is the outcome of the sync that handled a request.
type SyncResult struct {
	// Phase is Synced or Failed.
	Phase GitRepositoryPhase `json:"phase"`
	// Commit that was synced or attempted.
	// +optional
	Commit string `json:"commit,omitempty"`
	// Message says what happened.
	// +optional
	Message string `json:"message,omitempty"`
	// Objects counts what the sync did.
	// +optional
	Objects ObjectCounts `json:"objects,omitempty"`
	// Duration of the sync.
	// +optional
	Duration metav1.Duration `json:"duration,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// GitRepositoryList is a list of GitRepositories.
type GitRepositoryList struct {
	metav1.TypeMeta `json:",inline"`
	// Standard list metadata.
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	// Items are the GitRepositories.
	Items []GitRepository `json:"items"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// GitRepositorySyncRequest asks for a GitRepository to be synced now. POST it to
// .../gitrepositories/NAME/sync; the answer is the same kind, with the request's
// id and, when it waited, the result.
type GitRepositorySyncRequest struct {
	metav1.TypeMeta `json:",inline"`
	// Standard object metadata; the name, if given, must be the GitRepository's.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec says what to sync and whether to wait.
	// +optional
	Spec GitRepositorySyncRequestSpec `json:"spec,omitempty"`
	// Status says when the request was accepted and how it went.
	// +optional
	Status GitRepositorySyncRequestStatus `json:"status,omitempty"`
}

// GitRepositorySyncRequestSpec says what to sync and whether to wait for it.
type GitRepositorySyncRequestSpec struct {
	// Revision to sync: a 40-character commit, or a branch or tag name.
	// Defaults to the GitRepository's own ref.
	// +optional
	Revision string `json:"revision,omitempty"`
	// Force recreates objects whose immutable fields changed.
	// +optional
	Force bool `json:"force,omitempty"`
	// Wait blocks the call until the controller has handled the request, or
	// timeoutSeconds have passed.
	// +optional
	Wait bool `json:"wait,omitempty"`
	// TimeoutSeconds bounds the wait (1 to 30). Defaults to 20 when wait is set.
	// +optional
	TimeoutSeconds *int32 `json:"timeoutSeconds,omitempty"`
}

// GitRepositorySyncRequestStatus says when the request was accepted and, once
// handled, how it went.
type GitRepositorySyncRequestStatus struct {
	// ID of the request; it stays on the GitRepository until handled.
	// +optional
	ID string `json:"id,omitempty"`
	// AcceptedAt is when the request was recorded.
	// +optional
	AcceptedAt *metav1.Time `json:"acceptedAt,omitempty"`
	// HandledAt is when the controller finished handling it.
	// +optional
	HandledAt *metav1.Time `json:"handledAt,omitempty"`
	// Phase is Pending until handled, then Synced or Failed.
	// +optional
	Phase GitRepositoryPhase `json:"phase,omitempty"`
	// Commit that was synced or attempted.
	// +optional
	Commit string `json:"commit,omitempty"`
	// Message says what happened.
	// +optional
	Message string `json:"message,omitempty"`
	// Objects counts what the sync did.
	// +optional
	Objects *ObjectCounts `json:"objects,omitempty"`
	// Duration of the sync.
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
}
