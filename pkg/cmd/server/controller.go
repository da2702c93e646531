package server

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	componentbaseconfig "k8s.io/component-base/config"
	componentbaseoptions "k8s.io/component-base/config/options"
	componentbasevalidation "k8s.io/component-base/config/validation"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/apiserver"
	"github.com/falsesystems/alumiini/pkg/cdevents"
	"github.com/falsesystems/alumiini/pkg/controller"
	"github.com/falsesystems/alumiini/pkg/git"
	"github.com/falsesystems/alumiini/pkg/kustomizeproc"
	"github.com/falsesystems/alumiini/pkg/membership"
	"github.com/falsesystems/alumiini/pkg/webhook"
)

// ControllerOptions configure the controller that syncs GitRepositories.
type ControllerOptions struct {
	Enabled              bool
	GitCacheDir          string
	GitCacheMaxBytes     int64
	MaxConcurrentFetches int
	// MaxConcurrentFetchesPerNamespace keeps one namespace's slow servers
	// from holding every fetch slot.
	MaxConcurrentFetchesPerNamespace int

	// MaxConcurrentListings bounds ref listings at once;
	// MaxConcurrentListingsPerNamespace keeps one namespace's slow or huge
	// listings from taking them all.
	MaxConcurrentListings             int
	MaxConcurrentListingsPerNamespace int

	MaxFetchBytes                    int64
	GitLowSpeedBytes                 int64
	GitLowSpeedTime                  time.Duration
	GitCacheMinFreeBytes             int64
	MaxConcurrentApplies             int
	MaxConcurrentAppliesPerNamespace int
	KubeAPIQPS                       float32
	KubeAPIBurst                     int
	RestartIntensity                 int
	RestartPeriod                    time.Duration
	Limits                           git.Limits
	// DefaultServiceAccount is what a GitRepository without
	// serviceAccountName applies as, in its own namespace.
	DefaultServiceAccount string
	// MaxObjects bounds the objects one GitRepository may apply.
	MaxObjects int
	// Kustomize bounds each kustomize build's child process.
	Kustomize kustomizeproc.Limits
	// LeaderElection lets replicas share one storage with one running the
	// workers.
	LeaderElection componentbaseconfig.LeaderElectionConfiguration
	// ShareWork splits the GitRepositories between the live replicas, each
	// holding a Lease of its own (the --leader-elect-* timings apply).
	ShareWork bool
	// ReplicaName names this replica's Lease and is what GitRepositories
	// are hashed over; empty: the host name (a StatefulSet's pod name).
	ReplicaName string
	// ShardSelector limits the controller to the GitRepositories whose
	// labels it selects.
	ShardSelector string
	// CDEventsSinkURL is where CDEvents go; empty: nowhere.
	CDEventsSinkURL string
}

// DefaultGitCacheDir is where fetched repositories are kept.
const DefaultGitCacheDir = "/var/lib/alumiini/git"

func newControllerOptions() ControllerOptions {
	return ControllerOptions{
		Enabled:              true,
		GitCacheDir:          DefaultGitCacheDir,
		GitCacheMaxBytes:     git.DefaultMaxBytes,
		MaxConcurrentFetches: git.DefaultMaxConcurrentFetches,
		MaxFetchBytes:        git.DefaultMaxFetchBytes,
		GitLowSpeedBytes:     git.DefaultLowSpeedBytes,
		GitLowSpeedTime:      git.DefaultLowSpeedTime,
		GitCacheMinFreeBytes: git.DefaultMinFreeBytes,
		MaxConcurrentApplies: 16,
		// Listings: a round trip of refs each, but up to 16 MiB of them.
		MaxConcurrentListings: git.DefaultMaxConcurrentListings,
		// High on purpose: kube-apiserver's priority and fairness protects it;
		// a low client limit only makes pushes wait (Flux's 50 QPS is why it
		// needs seconds for what takes us a fraction).
		KubeAPIQPS:       1000,
		KubeAPIBurst:     2000,
		RestartIntensity: 5,
		RestartPeriod:    5 * time.Minute,
		MaxObjects:       controller.DefaultMaxObjects,
		Kustomize:        kustomizeproc.DefaultLimits,
		LeaderElection:   newLeaderElection(),
		Limits: git.Limits{MaxTotalBytes: git.DefaultMaxTotalBytes, MaxFiles: git.DefaultMaxFiles,
			MaxFileBytes: git.DefaultMaxFileBytes, MaxDepth: git.DefaultMaxDepth, MaxEntries: git.DefaultMaxEntries},
	}
}

// AddFlags adds the controller's flags.
func (o *ControllerOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Enabled, "controller", o.Enabled, "Run the controller that syncs GitRepositories (needs a target cluster: --kubeconfig or in-cluster).")
	fs.StringVar(&o.GitCacheDir, "git-cache-dir", o.GitCacheDir, "Directory of the shared git object stores; losing it costs only re-fetches.")
	fs.Int64Var(&o.GitCacheMaxBytes, "git-cache-max-bytes", o.GitCacheMaxBytes, "Disk bound of the git cache; least recently used stores are evicted past it.")
	fs.IntVar(&o.MaxConcurrentFetches, "max-concurrent-fetches", o.MaxConcurrentFetches, "Git fetches running at once, across all GitRepositories.")
	fs.IntVar(&o.MaxConcurrentFetchesPerNamespace, "max-concurrent-fetches-per-namespace", o.MaxConcurrentFetchesPerNamespace,
		"Fetch slots the GitRepositories of one namespace may hold at once (0: a quarter of --max-concurrent-fetches, at least 1).")
	fs.IntVar(&o.MaxConcurrentListings, "max-concurrent-listings", o.MaxConcurrentListings, "Git ref listings running at once, across all GitRepositories.")
	fs.IntVar(&o.MaxConcurrentListingsPerNamespace, "max-concurrent-listings-per-namespace", o.MaxConcurrentListingsPerNamespace,
		"Listing slots the GitRepositories of one namespace may hold at once (0: half of --max-concurrent-listings, at least 1).")
	fs.Int64Var(&o.MaxFetchBytes, "max-fetch-bytes", o.MaxFetchBytes, "Most bytes one git fetch or ref listing may receive, over HTTP or SSH.")
	fs.Int64Var(&o.GitLowSpeedBytes, "git-low-speed-bytes", o.GitLowSpeedBytes, "A git transfer receiving fewer bytes than this in --git-low-speed-time is stopped as stalled (0: the default).")
	fs.DurationVar(&o.GitLowSpeedTime, "git-low-speed-time", o.GitLowSpeedTime, "Window of --git-low-speed-bytes (0: the default; negative: no stall check).")
	fs.Int64Var(&o.GitCacheMinFreeBytes, "git-cache-min-free-bytes", o.GitCacheMinFreeBytes,
		"No fetch starts while the git cache's filesystem has less free space than this, so a full disk never reaches etcd (0: the default; negative: no check).")
	fs.IntVar(&o.MaxConcurrentApplies, "max-concurrent-applies", o.MaxConcurrentApplies, "Applies running at once, across all GitRepositories.")
	fs.IntVar(&o.MaxConcurrentAppliesPerNamespace, "max-concurrent-applies-per-namespace", o.MaxConcurrentAppliesPerNamespace,
		"Apply slots the GitRepositories of one namespace may hold at once (0: a quarter of --max-concurrent-applies, at least 1).")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "Queries per second to the target cluster and to alumiini's own API.")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Burst of queries to the target cluster and to alumiini's own API.")
	fs.IntVar(&o.RestartIntensity, "worker-restart-intensity", o.RestartIntensity, "Crashes of one worker within --worker-restart-period that mark its GitRepository Stalled.")
	fs.DurationVar(&o.RestartPeriod, "worker-restart-period", o.RestartPeriod, "Window in which --worker-restart-intensity crashes are counted.")
	fs.StringVar(&o.DefaultServiceAccount, "default-service-account", o.DefaultServiceAccount,
		"ServiceAccount (in the GitRepository's own namespace) that a GitRepository without spec.serviceAccountName applies as. "+
			"Empty: alumiini's own identity, which only users allowed to 'escalate' on gitrepositories may give one. Set it on every "+
			"alumiini process and keep it: without it, stored GitRepositories lacking serviceAccountName apply as alumiini.")
	fs.Uint64Var(&o.Kustomize.CPUSeconds, "kustomize-cpu-seconds", o.Kustomize.CPUSeconds, "CPU time one kustomize build may use; each runs in a child process.")
	fs.Uint64Var(&o.Kustomize.MemoryBytes, "kustomize-memory-bytes", o.Kustomize.MemoryBytes, "Memory one kustomize build's child process may use.")
	fs.IntVar(&o.Kustomize.Concurrent, "max-concurrent-kustomize-builds", o.Kustomize.Concurrent, "Kustomize builds running at once, across all GitRepositories.")
	fs.IntVar(&o.MaxObjects, "max-objects", o.MaxObjects, "Most objects one GitRepository may apply; a commit with more fails before anything is applied.")
	componentbaseoptions.BindLeaderElectionFlags(&o.LeaderElection, fs)
	fs.BoolVar(&o.ShareWork, "share-work", o.ShareWork,
		"Replicas over one etcd split the GitRepositories between them: each holds a Lease of its own in "+
			"--leader-elect-resource-namespace and syncs the GitRepositories that hash to it (needs --etcd-servers; not with --leader-elect).")
	fs.StringVar(&o.ShardSelector, "shard-selector", o.ShardSelector,
		"Label selector of the GitRepositories this controller syncs (e.g. shard=team-a); others are left to controllers with other selectors. "+
			"Every GitRepository must match exactly one shard's selector, or none syncs it.")
	fs.StringVar(&o.ReplicaName, "replica-name", o.ReplicaName,
		"This replica's name with --share-work, stable across restarts so it takes its share back (empty: the host name).")
	fs.StringVar(&o.CDEventsSinkURL, "cdevents-sink-url", o.CDEventsSinkURL,
		"http(s) URL CDEvents (service deployed, upgraded, removed, rolled back; drift) are posted to as CloudEvents, "+
			"from a bounded queue off the syncs' path. Empty: none are sent.")
	fs.Int64Var(&o.Limits.MaxTotalBytes, "max-manifest-bytes", o.Limits.MaxTotalBytes, "Most bytes read from one GitRepository's path (from the whole repository when the path holds a kustomization).")
	fs.IntVar(&o.Limits.MaxFiles, "max-manifest-files", o.Limits.MaxFiles, "Most files read from one GitRepository's path (from the whole repository when the path holds a kustomization).")
	fs.Int64Var(&o.Limits.MaxFileBytes, "max-manifest-file-bytes", o.Limits.MaxFileBytes, "Largest single file read.")
	fs.IntVar(&o.Limits.MaxDepth, "max-manifest-depth", o.Limits.MaxDepth, "Deepest directory nesting read under a path.")
	fs.IntVar(&o.Limits.MaxEntries, "max-manifest-entries", o.Limits.MaxEntries, "Most git tree entries (files, directories, symlinks) visited reading one path, or the repository for a kustomization.")
}

// Validate checks the controller options.
func (o *ControllerOptions) Validate() []error {
	var errs []error
	if o.Enabled && o.GitCacheDir == "" {
		errs = append(errs, fmt.Errorf("--git-cache-dir must not be empty"))
	}
	for name, v := range map[string]int{"--max-concurrent-fetches": o.MaxConcurrentFetches, "--max-concurrent-applies": o.MaxConcurrentApplies,
		"--worker-restart-intensity": o.RestartIntensity, "--max-objects": o.MaxObjects, "--max-manifest-files": o.Limits.MaxFiles, "--max-manifest-depth": o.Limits.MaxDepth,
		"--max-manifest-entries": o.Limits.MaxEntries, "--max-concurrent-listings": o.MaxConcurrentListings} {
		if v < 1 {
			errs = append(errs, fmt.Errorf("%s must be at least 1, got %d", name, v))
		}
	}
	if o.Kustomize.Concurrent < 1 || o.Kustomize.CPUSeconds < 1 || o.Kustomize.MemoryBytes < 64<<20 {
		errs = append(errs, fmt.Errorf("--max-concurrent-kustomize-builds and --kustomize-cpu-seconds must be at least 1, "+
			"--kustomize-memory-bytes at least 64 MiB (got %d, %d, %d)", o.Kustomize.Concurrent, o.Kustomize.CPUSeconds, o.Kustomize.MemoryBytes))
	}
	if o.CDEventsSinkURL != "" {
		if _, err := cdevents.NewSink(o.CDEventsSinkURL, "alumiini"); err != nil {
			errs = append(errs, err)
		}
	}
	if o.MaxFetchBytes < 1 {
		errs = append(errs, fmt.Errorf("--max-fetch-bytes must be at least 1, got %d", o.MaxFetchBytes))
	}
	for name, v := range map[string]int{"--max-concurrent-fetches-per-namespace": o.MaxConcurrentFetchesPerNamespace,
		"--max-concurrent-listings-per-namespace": o.MaxConcurrentListingsPerNamespace} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative, got %d", name, v))
		}
	}
	if o.LeaderElection.LeaderElect || o.ShareWork {
		for _, e := range componentbasevalidation.ValidateLeaderElectionConfiguration(&o.LeaderElection, field.NewPath("leaderElection")) {
			errs = append(errs, fmt.Errorf("--leader-elect: %s", e.Error()))
		}
	}
	if o.LeaderElection.LeaderElect && o.ShareWork {
		errs = append(errs, fmt.Errorf("--share-work and --leader-elect exclude each other: one splits the work, the other gives it all to one replica"))
	}
	if _, err := labels.Parse(o.ShardSelector); err != nil {
		errs = append(errs, fmt.Errorf("--shard-selector %q: %w", o.ShardSelector, err))
	}
	if o.ShardSelector != "" && o.ShareWork {
		// The replicas' Leases would count every shard's replicas as
		// members, and hash GitRepositories to replicas that never see them.
		errs = append(errs, fmt.Errorf("--shard-selector and --share-work exclude each other: run a shard as one replica, or as replicas with --leader-elect and a --leader-elect-resource-name of its own"))
	}
	if name := o.ReplicaName; name != "" {
		for _, msg := range validation.IsDNS1123Subdomain(membership.LeasePrefix + name) {
			errs = append(errs, fmt.Errorf("--replica-name %q: %s", name, msg))
		}
	}
	if name := o.DefaultServiceAccount; name != "" {
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			errs = append(errs, fmt.Errorf("--default-service-account %q: %s", name, msg))
		}
	}
	return errs
}

// targetConfig is the cluster objects are applied to: --kubeconfig, or the
// in-cluster config.
func targetConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return rest.InClusterConfig()
}

// addController starts the controller once the server serves, over the
// server's privileged loopback client.
func (o *Options) addController(server *apiserver.Server) error {
	co := o.Controller
	if !co.Enabled {
		klog.InfoS("The controller is disabled (--controller=false)")
		return nil
	}
	if o.standalone {
		klog.InfoS("The controller is off: standalone, there is no cluster to apply to")
		return nil
	}
	target, err := targetConfig(o.kubeconfig)
	if err != nil {
		return fmt.Errorf("the controller's target cluster: %w", err)
	}
	target.QPS, target.Burst = co.KubeAPIQPS, co.KubeAPIBurst
	// kube-apiserver gzips every event of a streamed watch list (each drift
	// watch) at its own CPU's cost, and this process unzips it again. In
	// the cluster that buys nothing; a --kubeconfig to a remote cluster over
	// a slow link loses the compression of answers over 128 KiB.
	target.DisableCompression = true
	cache, err := git.NewCache(git.Options{Dir: co.GitCacheDir, MaxBytes: co.GitCacheMaxBytes,
		MaxConcurrentFetches: co.MaxConcurrentFetches, MaxConcurrentFetchesPerTenant: co.MaxConcurrentFetchesPerNamespace,
		MaxConcurrentListings: co.MaxConcurrentListings, MaxConcurrentListingsPerTenant: co.MaxConcurrentListingsPerNamespace,
		MaxFetchBytes: co.MaxFetchBytes, LowSpeedBytes: co.GitLowSpeedBytes, LowSpeedTime: co.GitLowSpeedTime,
		MinFreeBytes: co.GitCacheMinFreeBytes, Limits: co.Limits})
	if err != nil {
		return err
	}
	var started atomic.Pointer[controller.Controller]
	if err := server.GenericAPIServer.AddReadyzChecks(healthz.NamedCheck("alumiini-controller", func(*http.Request) error {
		c := started.Load()
		if c == nil {
			return fmt.Errorf("the controller has not started")
		}
		return c.Synced()
	})); err != nil {
		return err
	}
	server.FinishWrites = func(ctx context.Context) {
		if c := started.Load(); c != nil {
			c.FinishWrites(ctx)
		}
	}
	return server.GenericAPIServer.AddPostStartHook("alumiini-controller", func(hook genericPostStartHookContext) error {
		o.exemptOwnWatches(hook.Context, target)
		c, err := o.newController(hook, target, cache)
		if err != nil {
			return err
		}
		server.Controller = c
		started.Store(c)
		stopped := make(chan struct{})
		o.controllerStopped.Store(&stopped)
		// hook.Context is k8s.io/apiserver's: it ends once the server stops
		// taking requests, after the pre-shutdown hooks (FinishWrites above)
		// return, not at SIGTERM. So syncs that are writing keep their
		// contexts through FinishWrites; a lost Lease ends them sooner, as
		// the workers run under the Lease's term (Config.Elect).
		go func() {
			defer close(stopped)
			if err := c.Run(hook.Context); err != nil {
				klog.ErrorS(err, "The controller stopped")
			}
		}()
		// The receiver is part of the controller: without the controller
		// there is nothing to trigger.
		return o.Webhook.startWebhook(hook.Context, c, target)
	})
}

// newController builds the controller over the server's loopback client,
// with its metrics registered.
func (o *Options) newController(hook genericPostStartHookContext, target *rest.Config, cache *git.Cache) (*controller.Controller, error) {
	co := o.Controller
	loopback := rest.CopyConfig(hook.LoopbackClientConfig)
	loopback.QPS, loopback.Burst = co.KubeAPIQPS, co.KubeAPIBurst
	// The server would gzip each watch event to itself. (Gzip, both ways and
	// on both clients, was 3% of alumiini's CPU profile while `make bench`
	// synced 1,000 GitRepositories.)
	loopback.DisableCompression = true
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding alumiini's own binary to run kustomize builds in: %w", err)
	}
	var events *cdevents.Sink
	if co.CDEventsSinkURL != "" {
		if events, err = cdevents.NewSink(co.CDEventsSinkURL, "alumiini"); err != nil {
			return nil, err
		}
		if err := cdevents.RegisterMetrics(legacyregistry.Registerer()); err != nil {
			return nil, fmt.Errorf("registering the CDEvents metrics: %w", err)
		}
	}
	var elect func(context.Context, func(context.Context) error) error
	var share *controller.Share
	switch {
	case co.LeaderElection.LeaderElect:
		if elect, _, err = elector(co.LeaderElection, "", target); err != nil {
			return nil, err
		}
	case co.ShareWork:
		if elect, share, err = co.sharer(target); err != nil {
			return nil, err
		}
	}
	c, err := controller.New(controller.Config{
		APIConfig:                        loopback,
		TargetConfig:                     target,
		Git:                              cache,
		MaxConcurrentApplies:             co.MaxConcurrentApplies,
		MaxConcurrentAppliesPerNamespace: co.MaxConcurrentAppliesPerNamespace,
		DefaultServiceAccount:            co.DefaultServiceAccount,
		MaxObjects:                       co.MaxObjects,
		Kustomize:                        o.kustomizeRunner(self).Build,
		Supervisor:                       controller.SupervisorOptions{RestartIntensity: co.RestartIntensity, RestartPeriod: co.RestartPeriod},
		URLKey:                           webhook.MatchKey,
		Events:                           events,
		Elect:                            elect,
		Share:                            share,
		ShardSelector:                    co.ShardSelector,
	})
	if err != nil {
		return nil, err
	}
	if err := controller.RegisterMetrics(legacyregistry.Registerer(), c); err != nil {
		return nil, fmt.Errorf("registering the controller's metrics: %w", err)
	}
	if err := git.RegisterMetrics(legacyregistry.Registerer(), cache); err != nil {
		return nil, fmt.Errorf("registering the git metrics: %w", err)
	}
	return c, nil
}

// sharer is --share-work: this replica holds the Lease alumiini-replica-NAME
// as the leader election of its own, and runs workers for its share while
// it does.
func (co ControllerOptions) sharer(target *rest.Config) (func(context.Context, func(context.Context) error) error, *controller.Share, error) {
	name := co.ReplicaName
	if name == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, nil, fmt.Errorf("naming this replica (--replica-name): %w", err)
		}
		name = host
	}
	le := co.LeaderElection
	le.ResourceName = membership.LeasePrefix + name
	elect, identity, err := elector(le, name, target)
	if err != nil {
		return nil, nil, err
	}
	kube, err := kubernetes.NewForConfig(target)
	if err != nil {
		return nil, nil, fmt.Errorf("building the client of the replicas' Leases: %w", err)
	}
	view := membership.NewView(kube, le.ResourceNamespace, le.LeaseDuration.Duration)
	return elect, &controller.Share{View: view, Name: name, Identity: identity, Recheck: le.RetryPeriod.Duration}, nil
}

// kustomizeRunner builds kustomizations in children of self; while they
// run, the soft memory limit leaves room for them.
func (o *Options) kustomizeRunner(self string) *kustomizeproc.Runner {
	builds := kustomizeproc.New(self, o.Controller.Kustomize)
	if o.softMemory != nil {
		builds.WhileBuilding(o.softMemory.Building)
	}
	return builds
}

// exemptOwnWatches keeps the controller's own watches of this API out of the
// per-user watch cap. Its health waits on the GitRepositories it applied go
// through kube-apiserver as its own identity, a ServiceAccount whose
// namespace's cap they would otherwise fill. kube-apiserver says who that is.
func (o *Options) exemptOwnWatches(ctx context.Context, target *rest.Config) {
	logger := klog.FromContext(ctx)
	client, err := kubernetes.NewForConfig(target)
	if err == nil {
		var review *authenticationv1.SelfSubjectReview
		if review, err = client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{},
			metav1.CreateOptions{}); err == nil {
			o.watchLimit.Exempt(review.Status.UserInfo.Username)
			logger.V(1).Info("The controller's own watches are not capped", "user", review.Status.UserInfo.Username)
			return
		}
	}
	logger.Error(err, "Could not learn the controller's own user from kube-apiserver; its watches of this API count toward its cap")
}
