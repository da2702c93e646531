// Package secrets reads the Secrets that GitRepositories name in
// spec.secretRef from watches, one per Secret in use, so a poll reads memory
// instead of sending kube-apiserver a GET. At 1,000 GitRepositories polling
// every few minutes those GETs were most of the idle load. Only the Secrets
// named are held, never every Secret of the cluster, and a watch nobody read
// for a while is stopped.
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
	// MaxBytes caps the data held of all watched Secrets together. A
	// Secret that would pass it is held without its data and read with a
	// GET instead, so whoever may create big Secrets cannot fill memory.
	MaxBytes int
	// IdleAfter stops the watch of a Secret nobody read for this long. A
	// GitRepository polling less often pays a LIST and a WATCH per poll
	// instead of a GET.
	IdleAfter time.Duration
	// MaxWatches caps the watches held at once; past it a read is a GET.
	// Each watch is a stream to kube-apiserver, and whoever may create
	// GitRepositories chooses how many Secret names they reference.
	MaxWatches int
	// SyncTimeout is how long a read waits for a new watch's first list
	// before it asks kube-apiserver directly (and gets its error, such as
	// Forbidden, rather than a silent wait).
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
	bytes   int // of the data held, for MaxBytes
}

type watch struct {
	informer cache.SharedIndexInformer
	stop     context.CancelFunc
	lastRead time.Time
	bytes    int
	// refused: kube-apiserver forbade the watch (RBAC granting only get);
	// reads GET until the entry goes idle and a watch is tried again.
	refused bool
}

// New returns a cache whose watches run until ctx ends.
func New(ctx context.Context, client kubernetes.Interface, options Options) *Cache {
	c := &Cache{client: client, options: options, ctx: ctx, now: time.Now,
		watches: map[types.NamespacedName]*watch{}}
	go wait.UntilWithContext(ctx, func(context.Context) { c.stopIdle() }, max(options.IdleAfter/4, time.Second))
	return c
}

// Data returns the data of Secret namespace/name, or a NotFound error. The
// map is shared: callers must not change it.
func (c *Cache) Data(ctx context.Context, namespace, name string) (map[string][]byte, error) {
	key := types.NamespacedName{Namespace: namespace, Name: name}
	informer := c.watched(key)
	if informer == nil || !c.waitForList(ctx, key, informer) {
		return c.get(ctx, namespace, name)
	}
	obj, exists, err := informer.GetStore().GetByKey(namespace + "/" + name)
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

// watched returns the informer of key, starting one if there is room, or nil.
func (c *Cache) watched(key types.NamespacedName) cache.SharedIndexInformer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w, ok := c.watches[key]; ok {
		w.lastRead = c.now()
		if w.refused {
			return nil
		}
		return w.informer
	}
	if len(c.watches) >= c.options.MaxWatches || c.ctx.Err() != nil {
		return nil
	}
	byName := func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", key.Name).String()
	}
	informer := coreinformers.NewFilteredSecretInformer(c.client, key.Namespace, 0, cache.Indexers{}, byName)
	_ = informer.SetTransform(func(obj any) (any, error) { return c.shrink(key, obj), nil })
	_ = informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		if apierrors.IsForbidden(err) {
			c.refuse(key)
		}
		cache.DefaultWatchErrorHandler(ctx, r, err)
	})
	ctx, stop := context.WithCancel(c.ctx)
	go informer.RunWithContext(ctx)
	c.watches[key] = &watch{informer: informer, stop: stop, lastRead: c.now()}
	return informer
}

// waitForList waits, at most SyncTimeout, for the informer's first list,
// and says whether it listed.
func (c *Cache) waitForList(ctx context.Context, key types.NamespacedName, informer cache.SharedIndexInformer) bool {
	if informer.HasSynced() {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, c.options.SyncTimeout)
	defer cancel()
	_ = wait.PollUntilContextCancel(ctx, 5*time.Millisecond, true, func(context.Context) (bool, error) {
		return informer.HasSynced() || c.refused(key), nil
	})
	return informer.HasSynced()
}

func (c *Cache) refuse(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w, ok := c.watches[key]; ok && !w.refused {
		w.refused = true
		w.stop()
	}
}

func (c *Cache) refused(key types.NamespacedName) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.watches[key]
	return ok && w.refused
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
	for key, w := range c.watches {
		if c.now().Sub(w.lastRead) > c.options.IdleAfter {
			w.stop()
			c.bytes -= w.bytes
			delete(c.watches, key)
		}
	}
}

// shrink keeps of a Secret its identity and the data under Keys (never nil),
// or no data at all (nil) if that would pass MaxBytes, and accounts for what
// it keeps. A deleted Secret stays counted
// until its watch stops: an overcount of one Secret at most.
func (c *Cache) shrink(key types.NamespacedName, obj any) any {
	secret, ok := obj.(*corev1.Secret)
	if !ok {
		return obj
	}
	secret.ManagedFields = nil
	kept, size := map[string][]byte{}, 0
	for _, k := range c.options.Keys {
		if v, ok := secret.Data[k]; ok {
			kept[k] = v
			size += len(k) + len(v)
		}
	}
	secret.Data = kept
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.watches[key]
	if !ok {
		return secret // stopped; its store goes with it
	}
	c.bytes -= w.bytes
	w.bytes = size
	if c.bytes+size > c.options.MaxBytes {
		w.bytes, secret.Data = 0, nil // held without data: read with a GET
	}
	c.bytes += w.bytes
	return secret
}
