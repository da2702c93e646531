package controller

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/apply"
	"github.com/falsesystems/alumiini/pkg/cdevents"
	"github.com/falsesystems/alumiini/pkg/drift"
	clientset "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned"
	generatedscheme "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned/scheme"
	informers "github.com/falsesystems/alumiini/pkg/generated/informers/externalversions"
	"github.com/falsesystems/alumiini/pkg/git"
	"github.com/falsesystems/alumiini/pkg/manifest"
	"github.com/falsesystems/alumiini/pkg/secrets"
	"github.com/falsesystems/alumiini/pkg/slots"
)

// Config is what the controller needs.
type Config struct {
	// APIConfig reaches the alumiini API (the server's loopback config).
	APIConfig *rest.Config
	// TargetConfig reaches the cluster objects are applied to.
	TargetConfig *rest.Config
	Git          *git.Cache
	// MaxConcurrentApplies bounds applies across all GitRepositories, and
	// MaxConcurrentAppliesPerNamespace those of one namespace (0: a quarter
	// of the first, at least 1).
	MaxConcurrentApplies             int
	MaxConcurrentAppliesPerNamespace int
	// DefaultServiceAccount is what a GitRepository without
	// serviceAccountName applies as; empty means the controller's identity.
	DefaultServiceAccount string
	// MaxObjects bounds the objects one GitRepository may apply.
	MaxObjects int
	// Kustomize builds kustomizations; nil builds them in this process.
	Kustomize  manifest.KustomizeFunc
	Supervisor SupervisorOptions
	// Render turns a path of a commit into objects; nil means
	// manifest.Render. Tests use it to make one repository's rendering
	// misbehave.
	Render RenderFunc
	// URLKey folds a repository URL to the key pushes are matched by
	// (webhook.MatchKey); nil leaves GitRepositories unindexed.
	URLKey func(url string) string
	// Events, if set, is where CDEvents go; the controller runs its sender.
	Events *cdevents.Sink
	// Share, when set, makes this replica sync only the GitRepositories it
	// owns (--share-work); Elect then holds this replica's own Lease.
	Share *Share
	// ShardSelector, when set, limits this controller to the
	// GitRepositories whose labels it selects (--shard-selector): fixed
	// sharding, each shard run by replicas of its own.
	ShardSelector string
	// Elect runs lead while this process holds the controller's leadership
	// and returns when ctx ends, or with lead's error; lead returns after its
	// workers have stopped. Nil: this process always leads.
	Elect func(ctx context.Context, lead func(ctx context.Context) error) error
}

// secretCacheOptions: the git credentials of spec.secretRef, up to 4,096
// Secrets and 16 MiB of them watched (a sixteenth of each per namespace);
// past that a poll reads with a GET.
var secretCacheOptions = secrets.Options{
	Keys:                   git.SecretKeys,
	MaxBytes:               16 << 20,
	MaxBytesPerNamespace:   1 << 20,
	MaxWatches:             4096,
	MaxWatchesPerNamespace: 256,
	IdleAfter:              30 * time.Minute,
	// A new watch lists in milliseconds; a list still waiting after this
	// is failing (Forbidden, say), and a GET then reports why.
	SyncTimeout: 5 * time.Second,
}

// Controller watches GitRepositories and runs their workers.
type Controller struct {
	config     Config
	client     clientset.Interface
	kube       kubernetes.Interface
	factory    informers.SharedInformerFactory
	reconciler *Reconciler
	supervisor *Supervisor
	broadcast  record.EventBroadcaster
	appliers   *appliers
	pushes     *pushPacer
	handOver   workqueue.TypedRateLimitingInterface[string]
	mu         sync.Mutex
	// owning settles ownership while this replica runs workers with Share.
	owning *ownership
	// stopped holds the error the controller stopped with, for /readyz.
	stopped atomic.Pointer[error]
}

// indexURL indexes GitRepositories by the key of their URL, for pushes.
const indexURL = "url"

// withoutManagedFields drops managedFields from the informers' copies: the
// controller never reads a GitRepository's, and they hold the path of every
// field its writers set. Status writes built from a copy cannot change the
// stored ones: for a subresource the server takes them from the stored
// object, not from the request.
func withoutManagedFields(obj any) (any, error) {
	if accessor, err := meta.Accessor(obj); err == nil {
		accessor.SetManagedFields(nil)
	}
	return obj, nil
}

// New builds a controller; Run starts it.
func New(cfg Config) (*Controller, error) {
	if cfg.MaxConcurrentApplies <= 0 {
		cfg.MaxConcurrentApplies = 16
	}
	client, err := clientset.NewForConfig(cfg.APIConfig)
	if err != nil {
		return nil, fmt.Errorf("building the alumiini client: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg.TargetConfig)
	if err != nil {
		return nil, fmt.Errorf("building the target cluster client: %w", err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = cfg.ShardSelector }),
		informers.WithTransform(withoutManagedFields))
	broadcast := record.NewBroadcaster()
	broadcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	recorder := broadcast.NewRecorder(generatedscheme.Scheme, corev1.EventSource{Component: "alumiini"})
	appliers, err := newAppliers(cfg.TargetConfig, cfg.DefaultServiceAccount)
	if err != nil {
		return nil, err
	}
	c := &Controller{config: cfg, client: client, kube: kube, factory: factory, broadcast: broadcast, appliers: appliers,
		handOver: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
	c.pushes = newPushPacer(pushWindow, func(key string) {
		namespace, name, _ := cache.SplitMetaNamespaceKey(key)
		c.Trigger(namespace, name)
	})
	if err := factory.Alumiini().V1alpha1().GitRepositories().Informer().AddIndexers(cache.Indexers{
		indexDependsOn: func(obj any) ([]string, error) {
			if repo, ok := obj.(*v1alpha1.GitRepository); ok {
				return dependencyKeys(repo), nil
			}
			return nil, nil
		}}); err != nil {
		return nil, fmt.Errorf("indexing GitRepositories by dependency: %w", err)
	}
	if cfg.URLKey != nil {
		err := factory.Alumiini().V1alpha1().GitRepositories().Informer().AddIndexers(cache.Indexers{
			indexURL: func(obj any) ([]string, error) {
				repo, ok := obj.(*v1alpha1.GitRepository)
				if !ok {
					return nil, nil
				}
				if key := cfg.URLKey(repo.Spec.URL); key != "" {
					return []string{key}, nil
				}
				return nil, nil
			}})
		if err != nil {
			return nil, fmt.Errorf("indexing GitRepositories by URL: %w", err)
		}
	}
	c.reconciler = &Reconciler{
		Client:     client,
		Lister:     factory.Alumiini().V1alpha1().GitRepositories().Lister(),
		Kube:       kube,
		Git:        cfg.Git,
		Appliers:   appliers,
		Recorder:   recorder,
		ApplySlots: slots.New(cfg.MaxConcurrentApplies, perNamespace(cfg)),
		Render:     cfg.Render,
		MaxObjects: cfg.MaxObjects,
		Kustomize:  cfg.Kustomize,
		stop:       newStopGate(),
	}
	if cfg.Share != nil {
		c.reconciler.Owner = cfg.Share.Identity
	}
	if cfg.Events != nil {
		c.reconciler.Events = cfg.Events
	}
	if c.reconciler.Render == nil {
		c.reconciler.Render = manifest.Render
	}
	return c, nil
}

func perNamespace(cfg Config) int {
	if cfg.MaxConcurrentAppliesPerNamespace > 0 {
		return cfg.MaxConcurrentAppliesPerNamespace
	}
	return max(1, cfg.MaxConcurrentApplies/4)
}

// Run watches GitRepositories until ctx ends. Workers run while Config.Elect
// lets this process lead (always, without it); the informers run regardless,
// so that every replica serves readiness and matches webhook pushes.
func (c *Controller) Run(ctx context.Context) error {
	defer c.broadcast.Shutdown()
	defer c.factory.Shutdown()
	var handingOver sync.WaitGroup // hand-overs and the CDEvents sender
	defer handingOver.Wait()
	ctx, cancel := context.WithCancel(ctx) // ends them when Run returns early
	defer cancel()
	defer c.handOver.ShutDown()
	informer := c.factory.Alumiini().V1alpha1().GitRepositories().Informer()
	c.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return fmt.Errorf("the GitRepository informer did not sync")
	}
	c.reconciler.Secrets = secrets.New(ctx, c.kube, secretCacheOptions)
	if share := c.config.Share; share != nil {
		go share.View.Run(ctx, c.membersChanged)
		if !cache.WaitForCacheSync(ctx.Done(), share.View.HasSynced) {
			return fmt.Errorf("the replicas' Leases did not sync")
		}
	}
	for range handOverWorkers {
		handingOver.Go(func() { c.handOverPushes(ctx) })
	}
	if c.config.Events != nil {
		handingOver.Go(func() { c.config.Events.Run(ctx) })
	}
	var err error
	if c.config.Elect == nil {
		err = c.lead(ctx)
	} else {
		err = c.config.Elect(ctx, c.lead)
	}
	if err != nil {
		c.stopped.Store(&err)
	}
	return err
}

// FinishWrites begins the process's stop, for good, before Run's context
// ends: syncs that have not begun writing objects end at once, and no new
// one starts; those writing finish, their outcome written (alumiini's API
// still serves meanwhile). It returns once none is writing, or when ctx
// ends. Cancelling Run's context then ends everything, as a lost Lease
// does at any time.
func (c *Controller) FinishWrites(ctx context.Context) {
	logger := klog.FromContext(ctx)
	logger.Info("Stopping: syncs that have not begun writing end, those writing may finish")
	if !c.reconciler.stop.finish(ctx) {
		logger.Info("Stopping with syncs still writing: the next process syncs them again")
	}
}

// lead runs one worker per GitRepository until ctx ends, and returns only
// once they all have returned.
func (c *Controller) lead(ctx context.Context) error {
	meta, err := metadata.NewForConfig(c.config.TargetConfig)
	if err != nil {
		return fmt.Errorf("building the metadata client for drift watches: %w", err)
	}
	// The watcher of this term tells this term's book, whatever the
	// reconciler holds by the time a late event arrives.
	var book *driftBook
	book = newDriftBook(drift.NewWatcher(ctx, meta, func(obj drift.Object, seen drift.Observed) {
		c.onDrift(book, obj, seen)
	}), c.appliers.mapper)
	c.reconciler.drift = book
	opts := c.config.Supervisor
	opts.OnStall = c.reconciler.Stall
	opts.OnStart, opts.OnExit = series.workerStarted, series.workerExited
	supervisor := NewSupervisor(ctx, c.reconciler.Sync, opts)
	c.mu.Lock()
	c.supervisor = supervisor
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.supervisor = nil
		c.mu.Unlock()
		supervisor.Wait()
	}()

	informer := c.factory.Alumiini().V1alpha1().GitRepositories().Informer()
	var owning *ownership
	if c.config.Share != nil {
		owning = newOwnership(*c.config.Share, c.client, c.reconciler.Lister, supervisor)
		c.mu.Lock()
		c.owning = owning
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			c.owning = nil
			c.mu.Unlock()
		}()
		go owning.run(ctx)
	}
	registration, err := informer.AddEventHandler(workerHandlers(supervisor, c.reconciler, informer.GetIndexer(), owning))
	if err != nil {
		return fmt.Errorf("watching GitRepositories: %w", err)
	}
	defer func() { _ = informer.RemoveEventHandler(registration) }()
	klog.FromContext(ctx).Info("Controller started", "gitRepositories", len(informer.GetStore().ListKeys()))
	<-ctx.Done()
	return nil
}

// workerHandlers keep one worker per GitRepository and wake it when its
// spec, deletion or sync request changes. With owning (--share-work), only
// GitRepositories this replica owns have workers, and every change is a
// reason to settle who owns it.
func workerHandlers(supervisor *Supervisor, reconciler *Reconciler, index cache.Indexer, owning *ownership) cache.ResourceEventHandlerFuncs {
	ours := func(repo *v1alpha1.GitRepository) bool {
		if owning == nil || repo == nil {
			return true
		}
		owning.queue.Add(repo.Namespace + "/" + repo.Name)
		return owning.mine(repo)
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) {
			if repo, _ := obj.(*v1alpha1.GitRepository); !ours(repo) {
				return
			}
			if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
				supervisor.Ensure(key)
				triggerDependents(supervisor, index, key) // they may wait for it to exist
			}
		},
		UpdateFunc: func(oldObj, newObj interface{}) {
			old, _ := oldObj.(*v1alpha1.GitRepository)
			repo, _ := newObj.(*v1alpha1.GitRepository)
			if old == nil || repo == nil || !ours(repo) {
				return
			}
			key, _ := cache.MetaNamespaceKeyFunc(repo)
			supervisor.Ensure(key)
			// Our own status writes change neither; a spec change, a new sync
			// request, a deletion or a claim (--share-work) does.
			if repo.Generation != old.Generation || repo.DeletionTimestamp != nil && old.DeletionTimestamp == nil ||
				newRequest(old, repo) || repo.Status.Owner != old.Status.Owner {
				supervisor.Trigger(key)
			}
			// A dependency turned Ready: its dependents sync now.
			wasReady, _ := readyForDependents(old)
			if isReady, _ := readyForDependents(repo); isReady && !wasReady {
				triggerDependents(supervisor, index, key)
			}
		},
		DeleteFunc: func(obj interface{}) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				supervisor.Stop(key)
				reconciler.Forget(key)
			}
		},
	}
}

// Synced reports an error until the controller has listed the
// GitRepositories: a /readyz check, so a replica that cannot sync yet takes
// no traffic.
func (c *Controller) Synced() error {
	if err := c.stopped.Load(); err != nil {
		return fmt.Errorf("the controller stopped: %w", *err)
	}
	if !c.factory.Alumiini().V1alpha1().GitRepositories().Informer().HasSynced() {
		return fmt.Errorf("the GitRepository informer has not synced yet")
	}
	return nil
}

// workers counts the running workers.
func (c *Controller) workers() int {
	c.mu.Lock()
	s := c.supervisor
	c.mu.Unlock()
	if s == nil {
		return 0
	}
	return s.Len()
}

// Trigger makes the worker of namespace/name sync now, as a webhook does. It
// reports whether such a GitRepository is known.
func (c *Controller) Trigger(namespace, name string) bool {
	c.mu.Lock()
	s := c.supervisor
	c.mu.Unlock()
	return s != nil && s.Trigger(namespace+"/"+name)
}

// onDrift makes the owner of an object the watch saw change sync (the
// GitRepository that applied it, whatever its labels say now), unless its
// drift mode is Ignore or the change cannot be drift.
func (c *Controller) onDrift(book *driftBook, obj drift.Object, seen drift.Observed) {
	key, ok := book.ownerOf(obj)
	if !ok {
		return // not in an inventory this process has seen
	}
	namespace, name, _ := cache.SplitMetaNamespaceKey(key)
	repo, err := c.reconciler.Lister.GitRepositories(namespace).Get(name)
	if err != nil || driftMode(repo) == v1alpha1.DriftIgnore {
		return
	}
	if !book.worthChecking(key, obj, seen) {
		return
	}
	c.reconciler.WokenByDrift(key)
	c.Trigger(namespace, name)
}

// Repositories returns the GitRepositories whose URL has key (see
// Config.URLKey).
func (c *Controller) Repositories(key string) []*v1alpha1.GitRepository {
	objs, err := c.factory.Alumiini().V1alpha1().GitRepositories().Informer().GetIndexer().ByIndex(indexURL, key)
	if err != nil {
		return nil
	}
	repos := make([]*v1alpha1.GitRepository, 0, len(objs))
	for _, o := range objs {
		if repo, ok := o.(*v1alpha1.GitRepository); ok {
			repos = append(repos, repo)
		}
	}
	return repos
}

// Push records a push webhook on repo and makes it sync now, or, within a
// burst, once more at the end of pushWindow; an Event names the sender, the
// ref and the delivery (the client's spam filter bounds Events per object).
// The status shows the push when the sync reports.
func (c *Controller) Push(repo *v1alpha1.GitRepository, push v1alpha1.PushRecord) {
	key := repo.Namespace + "/" + repo.Name
	if !c.runsWorker(key) {
		c.handOver.Add(key)
		return
	}
	c.reconciler.NotePush(key, push)
	c.pushes.push(key)
	delivery := cmp.Or(push.DeliveryID, "(none given)")
	// The commit is left out: the payload says it, not the remote, and the
	// status shows it once this GitRepository's own listing confirms it.
	c.reconciler.Recorder.Eventf(repo, corev1.EventTypeNormal, "PushReceived", "%s push to %s, delivery %s",
		push.Provider, push.Ref, delivery)
}

// Pushes reaching a replica that does not run the GitRepository's worker
// are handed to the replica that does (the leader, or its owner with
// --share-work) by a few goroutines, off the webhook's request, so a push
// fanning out to many GitRepositories is answered at once. The queue holds
// each GitRepository once, however many pushes name it, so it is bounded by
// the number of GitRepositories; a failed hand-over is retried a few times
// with backoff (then the interval syncs it).
const (
	handOverWorkers = 4
	handOverTimeout = 5 * time.Second
	handOverTries   = 5
)

// handOverPushes hands queued pushes over until the queue shuts down.
func (c *Controller) handOverPushes(ctx context.Context) {
	for {
		key, shutdown := c.handOver.Get()
		if shutdown {
			return
		}
		if err := c.handOverPush(ctx, key); err != nil && c.handOver.NumRequeues(key) < handOverTries-1 {
			c.handOver.AddRateLimited(key)
		} else {
			c.handOver.Forget(key)
		}
		c.handOver.Done(key)
	}
}

// handOverPush hands a push that reached a replica which does not sync the
// GitRepository to the one that does, as a stored sync request (what
// kubectl create --raw .../sync makes): that replica's informer sees it,
// lists the remote afresh and syncs if there is something new
// (handedOverPush). The push shows as status.lastSyncRequest rather than
// status.lastPush. It returns an error worth retrying.
func (c *Controller) handOverPush(ctx context.Context, key string) error {
	namespace, name, _ := cache.SplitMetaNamespaceKey(key)
	repo, err := c.reconciler.Lister.GitRepositories(namespace).Get(name)
	if err != nil {
		return nil // deleted meanwhile
	}
	ctx, cancel := context.WithTimeout(ctx, handOverTimeout)
	defer cancel()
	_, err = c.client.AlumiiniV1alpha1().GitRepositories(namespace).Sync(ctx, name,
		&v1alpha1.GitRepositorySyncRequest{}, metav1.CreateOptions{})
	switch {
	case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
		// Suspended, being deleted, or a request for another revision is
		// pending (it lists the remote too): nothing to retry.
		klog.FromContext(ctx).V(2).Info("Not handing a push over", logKeyRepository, klog.KObj(repo), "reason", err.Error())
		return nil
	case err != nil:
		klog.FromContext(ctx).Error(err, "Handing a push to the replica that syncs it, as a sync request", logKeyRepository, klog.KObj(repo))
		return err
	}
	c.reconciler.Recorder.Event(repo, corev1.EventTypeNormal, "PushReceived", "push handed to the replica that syncs it")
	return nil
}

// membersChanged: the live replicas changed, so ownership may move.
func (c *Controller) membersChanged() {
	c.mu.Lock()
	owning := c.owning
	c.mu.Unlock()
	if owning != nil {
		owning.settleAll()
	}
}

// runsWorker reports whether this process runs key's worker now.
func (c *Controller) runsWorker(key string) bool {
	c.mu.Lock()
	s := c.supervisor
	c.mu.Unlock()
	return s != nil && s.Has(key)
}

// workersRunning reports whether this process runs workers now: with
// --leader-elect, whether it leads; with --share-work, whether it holds
// its own Lease.
func (c *Controller) workersRunning() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.supervisor != nil
}

// triggerDependents wakes the GitRepositories whose spec.dependsOn names key.
func triggerDependents(supervisor *Supervisor, index cache.Indexer, key string) {
	dependents, _ := index.ByIndex(indexDependsOn, key)
	for _, d := range dependents {
		if k, err := cache.MetaNamespaceKeyFunc(d); err == nil {
			supervisor.Trigger(k)
		}
	}
}

// newRequest: a request was recorded, or another joined the pending one.
func newRequest(old, repo *v1alpha1.GitRepository) bool {
	p, before := repo.Status.PendingSyncRequest, old.Status.PendingSyncRequest
	if p == nil {
		return false
	}
	return before == nil || before.ID != p.ID || p.Rejoined && !before.Rejoined
}

// appliers builds one applier per identity, sharing the discovery mapper.
type appliers struct {
	config         *rest.Config
	mapper         *apply.SharedMapper
	defaultAccount string
	mu             sync.Mutex
	byUser         map[string]*apply.Applier
}

func newAppliers(config *rest.Config, defaultAccount string) (*appliers, error) {
	disco, err := discovery.NewDiscoveryClientForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("building the discovery client: %w", err)
	}
	return &appliers{
		config:         config,
		mapper:         apply.NewSharedMapper(restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disco))),
		defaultAccount: defaultAccount,
		byUser:         map[string]*apply.Applier{},
	}, nil
}

// For returns an applier that impersonates namespace's serviceAccount (or
// the default account), so a tenant syncs only what that account may change;
// with neither, the controller's own identity, which the API server lets only
// users allowed to escalate ask for.
func (a *appliers) For(namespace, serviceAccount string) (*apply.Applier, error) {
	if serviceAccount == "" {
		serviceAccount = a.defaultAccount
	}
	user := ""
	if serviceAccount != "" {
		user = "system:serviceaccount:" + namespace + ":" + serviceAccount
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if applier, ok := a.byUser[user]; ok {
		return applier, nil
	}
	config := rest.CopyConfig(a.config)
	if user != "" {
		// No groups: kube-apiserver adds a ServiceAccount's own, so
		// alumiini needs only 'impersonate' on serviceaccounts, never on
		// groups (with which it could act as any group at all).
		config.Impersonate = rest.ImpersonationConfig{UserName: user}
	}
	config.Wrap(notingRefusals) // for health waits: see withRefusalNote
	applier, err := apply.New(config, a.mapper)
	if err != nil {
		return nil, err
	}
	applier.CRDTimeout = 30 * time.Second
	a.byUser[user] = applier
	return applier, nil
}
