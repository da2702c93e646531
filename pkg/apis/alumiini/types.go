package alumiini

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// GitRepository asks alumiini to keep the cluster equal to what a path of a git
// repository holds.
type GitRepository struct {
	metav1.TypeMeta
	metav1.ObjectMeta

	Spec   GitRepositorySpec
	Status GitRepositoryStatus
}

// GitRepositorySpec is what the user wants synced, from where and how.
type GitRepositorySpec struct {
	URL                string
	Branch             string
	Tag                string
	Commit             string
	Path               string
	Interval           string
	Timeout            string
	TargetNamespace    string
	SecretRef          *LocalObjectReference
	Prune              *bool
	Suspend            bool
	ServiceAccountName string
	RolloutRef         *RolloutReference
	Adopt              bool
	Webhook            *WebhookSpec
	Drift              *DriftSpec
	Wait               bool
	HealthTimeout      string
	HealthChecks       []HealthCheckReference
	DependsOn          []DependencyReference
}

// DependencyReference names a GitRepository that must be Ready first.
type DependencyReference struct {
	Name      string
	Namespace string
}

// HealthCheckReference names an object whose health a sync waits for.
type HealthCheckReference struct {
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
}

// WebhookSpec authorizes push webhooks for one GitRepository.
type WebhookSpec struct {
	SecretRef LocalObjectReference
}

// DriftMode says what alumiini does about drift.
type DriftMode string

// The drift modes.
const (
	DriftCorrect DriftMode = "Correct"
	DriftDetect  DriftMode = "Detect"
	DriftIgnore  DriftMode = "Ignore"
)

// DriftSpec says what alumiini does when an applied object is changed by others.
type DriftSpec struct {
	Mode            DriftMode
	HealGracePeriod string
	Ignore          []DriftIgnoreRule
	AllowBreakGlass *bool
}

// DriftIgnoreRule names fields of some objects that drift leaves alone.
type DriftIgnoreRule struct {
	Group string
	Kind  string
	Name  string
	Paths []string
}

// LocalObjectReference names an object in the GitRepository's namespace.
type LocalObjectReference struct {
	Name string
}

// RolloutReference names the progressive-delivery object a new revision is handed to.
type RolloutReference struct {
	APIVersion string
	Kind       string
	Name       string
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
	ConditionHealthy     = "Healthy"
	ConditionRolledOut   = "RolledOut"
)

// GitRepositoryStatus is what the controller observed and did.
type GitRepositoryStatus struct {
	ObservedGeneration  int64
	Phase               GitRepositoryPhase
	LastSyncedCommit    string
	LastSyncTime        *metav1.Time
	LastAttemptedCommit string
	Message             string
	Conditions          []metav1.Condition
	Objects             *ObjectCounts
	Inventory           *Inventory
	PendingSyncRequest  *SyncRequestRecord
	LastSyncRequest     *SyncRequestRecord
	LastPush            *PushRecord
	Drift               *DriftStatus
	Rollout             *RolloutStatus
	Owner               string
}

// RolloutStatus is what alumiini last saw of the Rollout of spec.rolloutRef.
type RolloutStatus struct {
	Phase      string
	Step       *int32
	Weight     *int32
	Message    string
	ObservedAt metav1.Time
}

// PushRecord is a push webhook as received.
type PushRecord struct {
	Provider   string
	DeliveryID string
	Ref        string
	Commit     string
	ReceivedAt metav1.Time
}

// DriftStatus summarizes drift of the applied objects.
type DriftStatus struct {
	Drifted       int32
	Held          int32
	LastDetected  *metav1.Time
	LastCorrected *metav1.Time
	Objects       []DriftedObject
}

// DriftState says where one drifted object stands.
type DriftState string

// DriftedObject is one object that drifted or is held.
type DriftedObject struct {
	Group     string
	Kind      string
	Namespace string
	Name      string
	State     DriftState
	Manager   string
	Deleted   bool
	Since     metav1.Time
	Message   string
}

// ObjectCounts says what one sync did to the objects of a commit.
type ObjectCounts struct {
	Created    int32
	Configured int32
	Unchanged  int32
	Pruned     int32
}

// Inventory lists the objects a GitRepository applied, so that the ones that
// leave the repository can be pruned.
type Inventory struct {
	Entries []InventoryEntry
}

// InventoryEntry identifies one applied object.
type InventoryEntry struct {
	Group     string
	Version   string
	Kind      string
	Namespace string
	Name      string
	// PruneDisabled: its manifest carried alumiini.false.systems/prune:
	// disabled when last applied.
	PruneDisabled bool
}

// SyncRequestRecord is a sync request as kept on its GitRepository: pending
// until the controller handles it, then carrying the result.
type SyncRequestRecord struct {
	ID          string
	Revision    string
	Force       bool
	RequestedBy string
	AcceptedAt  metav1.Time
	Rejoined    bool
	HandledAt   *metav1.Time
	Result      *SyncResult
}

// SyncResult is the outcome of the sync that handled a request.
type SyncResult struct {
	Phase    GitRepositoryPhase
	Commit   string
	Message  string
	Objects  ObjectCounts
	Duration metav1.Duration
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// GitRepositoryList is a list of GitRepositories.
type GitRepositoryList struct {
	metav1.TypeMeta
	metav1.ListMeta

	Items []GitRepository
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// GitRepositorySyncRequest is the body and the answer of the sync subresource.
type GitRepositorySyncRequest struct {
	metav1.TypeMeta
	metav1.ObjectMeta

	Spec   GitRepositorySyncRequestSpec
	Status GitRepositorySyncRequestStatus
}

// GitRepositorySyncRequestSpec says what to sync and whether to wait for it.
type GitRepositorySyncRequestSpec struct {
	Revision       string
	Force          bool
	Wait           bool
	TimeoutSeconds *int32
}

// GitRepositorySyncRequestStatus says when the request was accepted and, once
// handled, how it went.
type GitRepositorySyncRequestStatus struct {
	ID         string
	AcceptedAt *metav1.Time
	HandledAt  *metav1.Time
	Phase      GitRepositoryPhase
	Commit     string
	Message    string
	Objects    *ObjectCounts
	Duration   *metav1.Duration
}
