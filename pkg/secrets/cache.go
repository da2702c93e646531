// Package secrets reads the Secrets that GitRepositories name in
// spec.secretRef from watches, one per Secret in use, so a poll reads memory
// instead of sending kube-apiserver a GET. At 1,000 GitRepositories polling
// every few minutes those GETs were most of the idle load. Only the Secrets
// named are held, never every Secret of the cluster, and a watch nobody read
// for a while is stopped: the kubelet's watch-based Secret manager works the
// same way for the Secrets its pods mount.
package secrets

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Options bound what a Cache holds.
type Options struct {
	// Keys are the data keys kept; the rest of a Secret is dropped.
	Keys []string
	// MaxBytes caps the data held of all watched Secrets together, and
	// MaxBytesPerNamespace that of one namespace's. A Secret that would pass
	// either is held without its data and read with a GET instead, so
	// whoever may create big Secrets can neither fill memory nor the cache.
	MaxBytes, MaxBytesPerNamespace int
	// IdleAfter stops the watch of a Secret nobody read for this long. A
	// GitRepository polling less often pays a LIST and a WATCH per poll
	// instead of a GET.
	IdleAfter time.Duration
	// MaxWatches caps the watches held at once, MaxWatchesPerNamespace
	// one namespace's; past either a read is a GET. Each watch is a stream
	// to kube-apiserver, and whoever may create GitRepositories chooses how
	// many Secret names they reference.
	MaxWatches, MaxWatchesPerNamespace int
	// SyncTimeout is how long a read waits for a new watch's first list
	// before it asks kube-apiserver directly. A list that fails (Forbidden,
	// throttled) ends the wait at once.
	SyncTimeout time.Duration
}

// Cache hands out the data of Secrets by namespace and name.
type Cache struct {
	client  kubernetes.Interface
	options Options
	ctx     context.Context
	now     func() time.Time

	mu      sync.Mutex
	watches map[types.NamespacedName]*watch
	// Of the data held, and the watches and data held per namespace.
	bytes     int
	nsWatches map[string]int
	nsBytes   map[string]int
}

type watch struct {
	key      types.NamespacedName
	informer cache.SharedIndexInformer
	stop     context.CancelFunc
	lastRead time.Time
	bytes    int
	// failed is closed, and failedAt set, when its first list failed
	// (Forbidden: RBAC granting only get; or any other error): reads GET
	// until retryFailed has passed, then a watch is tried again.
	failed   chan struct{}
	failedAt time.Time
}

const retryFailed = 5 * time.Minute

// shrunk marks, in memory only, a Secret shrink made.
const shrunk = "alumiini.false.systems/shrunk"

// New returns a cache whose watches run until ctx ends.
func New(ctx context.Context, client kubernetes.Interface, options Options) *Cache {
	c := &Cache{client: client, options: options, ctx: ctx, now: time.Now,
		watches: map[types.NamespacedName]*watch{}, nsWatches: map[string]int{}, nsBytes: map[string]int{}}
	go wait.UntilWithContext(ctx, func(context.Context) { c.stopIdle() }, max(options.IdleAfter/4, time.Second))
	return c
}

// Data returns the data of Secret namespace/name, or a NotFound error. The
// map is shared: callers must not change it.
func (c *Cache) Data(ctx context.Context, namespace, name string) (map[string][]byte, error) {
	w := c.watched(types.NamespacedName{Namespace: namespace, Name: name})
	if w == nil || !c.waitForList(ctx, w) {
		return c.get(ctx, namespace, name)
	}
	obj, exists, err := w.informer.GetStore().GetByKey(namespace + "/" + name)
	if err != nil {
		return nil, fmt.Errorf("reading Secret %s/%s from its watch: %w", namespace, name, err)
	}
	if !exists {
		return nil, apierrors.NewNotFound(corev1.Resource("secrets"), name)
	}
	data := obj.(*corev1.Secret).Data
	if data == nil { // did not fit MaxBytes (see shrink)
		return c.get(ctx, namespace, name)
	}
	return data, nil
}

// Watches is how many Secrets are watched now.
func (c *Cache) Watches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.watches)
}

// watched returns the watch of key, starting one if there is room, or nil.
func (c *Cache) watched(key types.NamespacedName) *watch {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w, ok := c.watches[key]; ok {
		w.lastRead = c.now()
		if w.failedAt.IsZero() {
			return w
		}
		if c.now().Sub(w.failedAt) < retryFailed {
			return nil
		}
		c.drop(w)
	}
	if len(c.watches) >= c.options.MaxWatches || c.nsWatches[key.Namespace] >= c.options.MaxWatchesPerNamespace || c.ctx.Err() != nil {
		return nil
	}
	byName := func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", key.Name).String()
	}
	w := &watch{key: key, lastRead: c.now(), failed: make(chan struct{}),
		informer: coreinformers.NewFilteredSecretInformer(c.client, key.Namespace, 0, cache.Indexers{}, byName)}
	_ = w.informer.SetTransform(func(obj any) (any, error) { return c.shrink(w, obj), nil })
	_ = w.informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		if !w.informer.HasSynced() || apierrors.IsForbidden(err) {
			c.fail(w)
		}
		cache.DefaultWatchErrorHandler(ctx, r, err)
	})
	var ctx context.Context
	ctx, w.stop = context.WithCancel(c.ctx)
	go w.informer.RunWithContext(ctx)
	c.watches[key] = w
	c.nsWatches[key.Namespace]++
	return w
}

// waitForList waits, at most SyncTimeout, for w's first list, and says
// whether it listed.
func (c *Cache) waitForList(ctx context.Context, w *watch) bool {
	if w.informer.HasSynced() {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, c.options.SyncTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !w.informer.HasSynced() {
		select {
		case <-ctx.Done():
			return false
		case <-w.failed:
			return false
		case <-tick.C:
		}
	}
	return true
}

// fail stops w, whose list failed; reads GET until retryFailed has passed.
func (c *Cache) fail(w *watch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watches[w.key] != w || !w.failedAt.IsZero() {
		return
	}
	w.failedAt = c.now()
	close(w.failed)
	w.stop()
	c.bytes -= w.bytes
	c.nsBytes[w.key.Namespace] -= w.bytes
	w.bytes = 0
}

func (c *Cache) get(ctx context.Context, namespace, name string) (map[string][]byte, error) {
	secret, err := c.client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return secret.Data, nil
}

func (c *Cache) stopIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.watches {
		if c.now().Sub(w.lastRead) > c.options.IdleAfter {
			c.drop(w)
		}
	}
}

// drop stops w and forgets it. Called with c.mu held.
func (c *Cache) drop(w *watch) {
	w.stop()
	c.bytes -= w.bytes
	c.nsBytes[w.key.Namespace] -= w.bytes
	if c.nsWatches[w.key.Namespace]--; c.nsWatches[w.key.Namespace] <= 0 {
		delete(c.nsWatches, w.key.Namespace)
		delete(c.nsBytes, w.key.Namespace)
	}
	delete(c.watches, w.key)
}

// shrink keeps of a Secret its identity and the data under Keys (never nil),
// or no data at all (nil) if that would pass MaxBytes or
// MaxBytesPerNamespace, and accounts for what it keeps. A deleted Secret stays
// counted until its watch stops: an overcount of one Secret at most.
func (c *Cache) shrink(w *watch, obj any) any {
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return obj
	}
	if _, done := secret.Annotations[shrunk]; done {
		// client-go may transform an object twice (a watch that lists
		// does); once shrunk, it stays as it is, and counted once.
		return obj
	}
	// A new object, not the Secret trimmed: its labels and annotations may
	// be large (kubectl's last-applied-configuration holds every key again).
	kept := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: secret.Namespace, Name: secret.Name,
		UID: secret.UID, ResourceVersion: secret.ResourceVersion, Annotations: map[string]string{shrunk: ""}},
		Data: map[string][]byte{}}
	size := 0
	for _, k := range c.options.Keys {
		if v, ok := secret.Data[k]; ok {
			kept.Data[k] = v
			size += len(k) + len(v)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watches[w.key] != w {
		return kept // stopped; its store goes with it
	}
	ns := w.key.Namespace
	c.bytes -= w.bytes
	c.nsBytes[ns] -= w.bytes
	w.bytes = size
	if c.bytes+size > c.options.MaxBytes || c.nsBytes[ns]+size > c.options.MaxBytesPerNamespace {
		w.bytes, kept.Data = 0, nil // held without data: read with a GET
	}
	c.bytes += w.bytes
	c.nsBytes[ns] += w.bytes
	return kept
}
