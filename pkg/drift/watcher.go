// Package drift watches the objects alumiini applied and says when someone
// else changed or deleted one. One metadata-only watch per kind serves every
// GitRepository; it sees only objects carrying alumiini's label, and keeps of
// each only its identity, its generation, a fingerprint of who owns which
// fields and a short sum of each other managedFields entry, so its memory
// grows with the managed objects, not with the cluster.
package drift

import (
	"context"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/apply"
)

// Object identifies one watched object.
type Object struct {
	Resource  schema.GroupResource
	Namespace string
	Name      string
}

// Observed is what the watch holds of an object.
type Observed struct {
	Exists          bool
	ResourceVersion string
	// Fingerprint of its field ownership (see Fingerprint).
	Fingerprint string
	// ForeignWrite: someone else wrote it (not only its status) after
	// alumiini's last apply, as far as managedFields' times say, or alumiini
	// applied nothing of it: what a controller with no baseline must check.
	ForeignWrite bool
	// OthersWrote, told with a watch event only: the write it shows added
	// to a managedFields entry other than alumiini's apply, or made or
	// re-dated one (someone else's write, its status included); false from
	// Lookup.
	OthersWrote bool
	// Generation is how many times its spec changed, for kinds that count
	// (0 for those that do not, such as ConfigMaps).
	Generation int64
	// OwnApplied is when an apply under alumiini's field manager name last
	// changed it (whole seconds; zero for none): after a restart, one later
	// than alumiini's own last write is someone else's.
	OwnApplied time.Time
	// Held: it carries the break-glass annotation.
	Held bool
}

// Notify is told of every change to a watched object, with what the watch
// now holds of it; it decides, cheaply, whether that may be drift.
type Notify func(obj Object, seen Observed)

// Watcher keeps one metadata watch per resource, shared by all owners.
type Watcher struct {
	client metadata.Interface
	notify Notify

	ctx      context.Context
	mu       sync.Mutex
	watching map[schema.GroupResource]cache.SharedIndexInformer
}

// NewWatcher returns a watcher whose watches run until ctx ends and tell
// notify of every object that may have drifted.
func NewWatcher(ctx context.Context, client metadata.Interface, notify Notify) *Watcher {
	return &Watcher{client: client, notify: notify, ctx: ctx,
		watching: map[schema.GroupResource]cache.SharedIndexInformer{}}
}

// Watch starts watching resource unless it is watched already (at any
// version: one watch per group and resource), and returns whether the watch
// has listed.
func (w *Watcher) Watch(resource schema.GroupVersionResource) cache.InformerSynced {
	w.mu.Lock()
	defer w.mu.Unlock()
	if informer, ok := w.watching[resource.GroupResource()]; ok {
		return informer.HasSynced
	}
	informer := metadatainformer.NewFilteredMetadataInformer(w.client, resource, metav1.NamespaceAll, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = apply.LabelName }).Informer()
	if err := informer.SetTransform(w.shrink); err != nil {
		klog.FromContext(w.ctx).Error(err, "Setting the drift watch transform", "resource", resource)
	}
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			old, okOld := oldObj.(*metav1.PartialObjectMetadata)
			obj, okNew := newObj.(*metav1.PartialObjectMetadata)
			if okOld && okNew && old.ResourceVersion != obj.ResourceVersion {
				w.tell(resource, obj, observedChange(old, obj))
			}
		},
		DeleteFunc: func(obj any) {
			if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tombstone.Obj
			}
			if meta, ok := obj.(*metav1.PartialObjectMetadata); ok {
				w.tell(resource, meta, Observed{})
			}
		},
	})
	if err != nil {
		klog.FromContext(w.ctx).Error(err, "Watching for drift", "resource", resource)
	}
	w.watching[resource.GroupResource()] = informer
	go informer.RunWithContext(w.ctx)
	return informer.HasSynced
}

// Lookup says what the watch holds of obj; ok is false while the watch of
// its resource has not listed yet (or was never asked for), when nothing can
// be said.
func (w *Watcher) Lookup(obj Object) (Observed, bool) {
	w.mu.Lock()
	informer := w.watching[obj.Resource]
	w.mu.Unlock()
	if informer == nil || !informer.HasSynced() {
		return Observed{}, false
	}
	key := obj.Name
	if obj.Namespace != "" {
		key = obj.Namespace + "/" + obj.Name
	}
	item, exists, err := informer.GetStore().GetByKey(key)
	if err != nil || !exists {
		return Observed{}, err == nil
	}
	return observed(item.(*metav1.PartialObjectMetadata)), true
}

func observed(meta *metav1.PartialObjectMetadata) Observed {
	seen := Observed{Exists: true, ResourceVersion: meta.ResourceVersion, Generation: meta.Generation,
		Fingerprint: meta.Annotations[annotationFingerprint], ForeignWrite: meta.Annotations[annotationForeignWrite] != "",
		Held: meta.Annotations[annotationHeld] != ""}
	if unix, err := strconv.ParseInt(meta.Annotations[annotationOwnApplied], 10, 64); err == nil {
		seen.OwnApplied = time.Unix(unix, 0)
	}
	return seen
}

// observedChange is what an update event from old to obj (both shrunk)
// shows.
func observedChange(old, obj *metav1.PartialObjectMetadata) Observed {
	seen := observed(obj)
	seen.OthersWrote = othersWrote(old.Annotations[annotationOthers], obj.Annotations[annotationOthers])
	return seen
}

// tell passes an event on. Whose object it is, is for the notified to say,
// never its labels: whoever may write the object may change them.
func (w *Watcher) tell(resource schema.GroupVersionResource, meta *metav1.PartialObjectMetadata, seen Observed) {
	w.notify(Object{Resource: resource.GroupResource(), Namespace: meta.Namespace, Name: meta.Name}, seen)
}

// Keys under which shrink keeps what it computed, in the cached copy only
// (never written to the cluster).
const (
	annotationFingerprint  = "drift.alumiini.false.systems/fingerprint"
	annotationForeignWrite = "drift.alumiini.false.systems/foreign-write"
	annotationOthers       = "drift.alumiini.false.systems/others"
	annotationHeld         = "drift.alumiini.false.systems/held"
	annotationOwnApplied   = "drift.alumiini.false.systems/own-applied"
)

// shrink keeps of a watched object only what drift needs: its identity,
// its generation, the fingerprint and, per other managedFields entry, a sum
// of who wrote it and when and its size, in one small map. A Deployment's metadata as
// received takes about 2.4 KB in the store, shrunk about 0.8 KB
// (BenchmarkWatchedObjectBytes).
func (w *Watcher) shrink(obj any) (any, error) {
	meta, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil // a tombstone: already shrunk
	}
	if _, shrunk := meta.Annotations[annotationFingerprint]; shrunk && len(meta.ManagedFields) == 0 && meta.UID == "" {
		// client-go may hand an object already in the store to the
		// transform again (a relist); shrinking it twice would fingerprint
		// its emptied managedFields. A shrunk copy has no UID, an object
		// from the cluster always has one: whoever may update an object can
		// empty its managedFields and give it these annotations, which then
		// stood as the watch's record (attacker review).
		return obj, nil
	}
	small := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name: meta.Name, Namespace: meta.Namespace, ResourceVersion: meta.ResourceVersion, Generation: meta.Generation,
		Annotations: map[string]string{
			annotationFingerprint: Fingerprint(meta),
			annotationOthers:      othersEntries(meta),
		},
	}}
	applied := ownApplied(meta)
	if foreignWriteAfter(meta, applied) {
		small.Annotations[annotationForeignWrite] = "true"
	}
	if applied != nil {
		small.Annotations[annotationOwnApplied] = strconv.FormatInt(applied.Unix(), 10)
	}
	if meta.Annotations[apply.AnnotationSuspendHeal] == "true" {
		small.Annotations[annotationHeld] = "true"
	}
	return small, nil
}
