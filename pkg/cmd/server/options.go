// Package server holds the alumiini command: its options, and how they become
// a running API server. The cobra command only calls Complete, Validate and
// Run, in that order.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/apiserver/pkg/util/compatibility"
	"k8s.io/client-go/rest"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/cli/globalflag"
	"k8s.io/component-base/term"
	"k8s.io/klog/v2"
	netutils "k8s.io/utils/net"

	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/logs/json/register" // --logging-format=json

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/apiserver"
	"github.com/falsesystems/alumiini/pkg/controller"
	alumiiniopenapi "github.com/falsesystems/alumiini/pkg/generated/openapi"
	"github.com/falsesystems/alumiini/pkg/peruser"
	"github.com/falsesystems/alumiini/pkg/storage/embeddedetcd"
	"github.com/falsesystems/alumiini/pkg/version"
)

const (
	etcdPathPrefix = "/registry/alumiini.false.systems"
	// DefaultEtcdDataDir is where the embedded etcd keeps its data unless
	// --etcd-data-dir says otherwise.
	DefaultEtcdDataDir = "/var/lib/alumiini/etcd"
	defaultSecurePort  = 8443
)

// Options are everything the alumiini command line sets.
type Options struct {
	RecommendedOptions *genericoptions.RecommendedOptions

	// EtcdDataDir is the embedded etcd's data directory, used when no
	// --etcd-servers are given.
	EtcdDataDir string
	// EtcdUnsafeNoFsync skips fsync in the embedded etcd; for tests only.
	EtcdUnsafeNoFsync bool
	// EtcdCluster makes the embedded etcd one member of several.
	EtcdCluster EtcdClusterOptions

	// Controller configures the controller that syncs GitRepositories.
	Controller ControllerOptions
	Webhook    WebhookOptions
	Metrics    MetricsOptions
	Memory     MemoryOptions
	// APIServiceName is the APIService whose caBundle alumiini sets to its
	// self-signed serving certificate at start.
	APIServiceName string
	// MaxWatchesPerUser bounds the watches of this API one user (or one
	// namespace's ServiceAccounts) holds at once.
	MaxWatchesPerUser int
	// Logs configures logging (--logging-format=json, -v), as Kubernetes
	// components do.
	Logs *logsapi.LoggingConfiguration

	// standalone is set by Complete when there is no cluster to delegate
	// authentication and authorization to.
	standalone bool
	// storageFailed, set by Run, is told when the embedded etcd fails.
	storageFailed func(error)
	// kubeconfig is --kubeconfig, kept because standalone mode drops CoreAPI.
	kubeconfig string
	// softMemory, set by Run unless off, leaves room in Go's soft memory
	// limit for the kustomize builds running.
	softMemory *softMemoryLimiter
	// watchLimit, set by Config, caps the watches of each user.
	watchLimit *peruser.Limit
	// controllerStopped, set once the controller runs, is closed when it
	// has stopped (its workers done, its Lease released).
	controllerStopped atomic.Pointer[chan struct{}]

	StdOut io.Writer
	StdErr io.Writer
}

// NewOptions returns the options with their defaults.
func NewOptions(out, errOut io.Writer) *Options {
	o := &Options{
		RecommendedOptions: genericoptions.NewRecommendedOptions(
			etcdPathPrefix,
			apiserver.Codecs.LegacyCodec(v1alpha1.SchemeGroupVersion),
		),
		EtcdDataDir: DefaultEtcdDataDir,
		EtcdCluster: newEtcdClusterOptions(),
		Controller:  newControllerOptions(),
		Webhook:     newWebhookOptions(),
		Memory:      newMemoryOptions(),
		// An idle watch costs about 105 KB (docs/security.md); a client
		// needs one per resource and namespace it follows.
		MaxWatchesPerUser: 100,
		Logs:              logsapi.NewLoggingConfiguration(),
		StdOut:            out,
		StdErr:            errOut,
	}
	o.RecommendedOptions.Etcd.StorageConfig.EncodeVersioner = runtime.NewMultiGroupVersioner(
		v1alpha1.SchemeGroupVersion, schema.GroupKind{Group: v1alpha1.GroupName})
	o.RecommendedOptions.SecureServing.BindPort = defaultSecurePort
	// Self-signed certificates, when no --tls-cert-file is given, stay in memory.
	o.RecommendedOptions.SecureServing.ServerCert.CertDirectory = ""
	// pprof only on request (--profiling): its handlers can hold a CPU for
	// as long as the caller asks, and share the process with etcd.
	o.RecommendedOptions.Features.EnableProfiling = false
	// The watch cache stays on (--watch-cache), although it holds every
	// GitRepository beside the controller's informer (7 KiB of heap per
	// GitRepository at 1,000, docs/scale.md): it closes a watch whose client
	// stops reading. Without it each watch is an etcd watch, whose client
	// buffers every later event for a stalled reader without limit (eight
	// unread watches grew the heap by 117 MiB over 600 writes of 16 KiB,
	// TestStalledWatchesAreNotBuffered), and every event is decoded and
	// encoded again for each watcher.
	return o
}

// NewCommand returns the alumiini command.
func NewCommand(ctx context.Context, o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alumiini",
		Short: "GitOps for Kubernetes: an aggregated API server for GitRepositories and the controller that syncs them",
		Long: `alumiini serves the alumiini.false.systems API group behind kube-apiserver and keeps
the cluster equal to what each GitRepository's git path holds.

Storage is an embedded etcd under --etcd-data-dir unless --etcd-servers names an
external etcd cluster. Authentication and authorization are delegated to the
cluster given by --kubeconfig (or the in-cluster config).`,
		SilenceUsage: true,
		RunE: func(c *cobra.Command, args []string) error {
			// Before anything logs, so every line has the chosen format.
			if err := logsapi.ValidateAndApply(o.Logs, nil); err != nil {
				return err
			}
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(args); err != nil {
				return err
			}
			return o.Run(c.Context())
		},
	}
	cmd.SetContext(ctx)
	// --version and `alumiini version` print the same.
	cmd.Version = version.Get().Version
	cmd.SetVersionTemplate(version.Get().String())
	cmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print alumiini's version, commit, build date, and the Go and Kubernetes library versions",
		Args:  cobra.NoArgs,
		Run: func(c *cobra.Command, _ []string) {
			fmt.Fprint(c.OutOrStdout(), version.Get().String())
		},
	})

	namedFlagSets := o.Flags()
	fs := cmd.Flags()
	for _, f := range namedFlagSets.FlagSets {
		fs.AddFlagSet(f)
	}
	cols, _, _ := term.TerminalSize(cmd.OutOrStdout())
	cliflag.SetUsageAndHelpFunc(cmd, namedFlagSets, cols)
	return cmd
}

// Flags returns the command's flags, grouped for --help.
func (o *Options) Flags() cliflag.NamedFlagSets {
	var sets cliflag.NamedFlagSets
	storage := sets.FlagSet("storage")
	storage.StringVar(&o.EtcdDataDir, "etcd-data-dir", o.EtcdDataDir,
		"Data directory of the embedded etcd, used when --etcd-servers is not given.")
	storage.BoolVar(&o.EtcdUnsafeNoFsync, "etcd-unsafe-no-fsync", o.EtcdUnsafeNoFsync,
		"Do not fsync the embedded etcd's writes. For tests only: a crash may lose data.")
	_ = storage.MarkHidden("etcd-unsafe-no-fsync")
	o.EtcdCluster.AddFlags(storage)

	o.Controller.AddFlags(sets.FlagSet("controller"))
	o.Webhook.AddFlags(sets.FlagSet("webhooks"))
	o.Metrics.AddFlags(sets.FlagSet("metrics"))
	o.Memory.AddFlags(sets.FlagSet("memory"))
	sets.FlagSet("secure serving").StringVar(&o.APIServiceName, "apiservice-name", o.APIServiceName,
		"APIService (e.g. v1alpha1.alumiini.false.systems) whose caBundle alumiini sets, at every start, to the self-signed "+
			"serving certificate it makes when no --tls-cert-file is given. Empty: leave it alone.")
	sets.FlagSet("api limits").IntVar(&o.MaxWatchesPerUser, "max-watches-per-user", o.MaxWatchesPerUser,
		"Watches of alumiini.false.systems that one user holds at once on this replica; the ServiceAccounts of one "+
			"namespace count as one user, and clients sharing a user name share its watches. Beyond it a watch is refused "+
			"with 429. Members of system:masters and alumiini's own identity are not counted.")
	logsapi.AddFlags(o.Logs, sets.FlagSet("logging"))
	ro := o.RecommendedOptions
	ro.Etcd.AddFlags(sets.FlagSet("etcd"))
	ro.SecureServing.AddFlags(sets.FlagSet("secure serving"))
	ro.Authentication.AddFlags(sets.FlagSet("authentication"))
	ro.Authorization.AddFlags(sets.FlagSet("authorization"))
	ro.CoreAPI.AddFlags(sets.FlagSet("cluster"))
	ro.Audit.AddFlags(sets.FlagSet("auditing"))
	ro.Features.AddFlags(sets.FlagSet("features"))
	ro.Admission.AddFlags(sets.FlagSet("admission"))
	ro.EgressSelector.AddFlags(sets.FlagSet("egress selector"))
	ro.Traces.AddFlags(sets.FlagSet("traces"))
	globalflag.AddGlobalFlags(sets.FlagSet("global"), "alumiini")
	return sets
}

// Complete fills in what the flags left open: delegation falls back to
// --kubeconfig, and without any cluster to delegate to the server runs
// standalone (only its own loopback client is authorized).
func (o *Options) Complete() error {
	ro := o.RecommendedOptions
	kubeconfig := ro.CoreAPI.CoreAPIKubeconfigPath
	o.kubeconfig = kubeconfig
	if ro.Authentication.RemoteKubeConfigFile == "" {
		ro.Authentication.RemoteKubeConfigFile = kubeconfig
	}
	if ro.Authorization.RemoteKubeConfigFile == "" {
		ro.Authorization.RemoteKubeConfigFile = kubeconfig
	}
	inCluster := os.Getenv("KUBERNETES_SERVICE_HOST") != "" && os.Getenv("KUBERNETES_SERVICE_PORT") != ""
	if kubeconfig == "" && !inCluster {
		o.standalone = true
		klog.InfoS("No --kubeconfig and not in a cluster: serving standalone, without delegated authentication, " +
			"authorization or admission; only the server's own loopback client is authorized")
		ro.CoreAPI = nil
		ro.Admission = nil
		ro.Features.EnablePriorityAndFairness = false
		ro.Authentication.RemoteKubeConfigFileOptional = true
		ro.Authorization.RemoteKubeConfigFileOptional = true
		return nil
	}
	o.enableResourceQuota()
	return nil
}

// Validate checks the options. Without --etcd-servers the embedded etcd's
// address is not known before it starts, so the server list check waits.
func (o *Options) Validate(args []string) error {
	var errs []error
	if len(args) > 0 {
		errs = append(errs, fmt.Errorf("alumiini takes no arguments, got %q", args))
	}
	etcd := o.RecommendedOptions.Etcd
	errs = append(errs, o.EtcdCluster.Validate(!o.embeddedEtcd())...)
	if o.embeddedEtcd() {
		if o.EtcdDataDir == "" {
			errs = append(errs, fmt.Errorf("--etcd-data-dir must not be empty when --etcd-servers is not given"))
		}
		const alone = "needs --etcd-servers or --etcd-cluster-size: replicas over a single-member embedded etcd would each keep a store of their own"
		if o.Controller.LeaderElection.LeaderElect && !o.EtcdCluster.clustered() {
			errs = append(errs, fmt.Errorf("--leader-elect %s", alone))
		}
		if o.Controller.ShareWork && !o.EtcdCluster.clustered() {
			errs = append(errs, fmt.Errorf("--share-work %s", alone))
		}
		if o.Controller.ShardSelector != "" && !o.EtcdCluster.clustered() {
			errs = append(errs, fmt.Errorf("--shard-selector %s", alone))
		}
		etcd.StorageConfig.Transport.ServerList = []string{"embedded"}
		defer func() { etcd.StorageConfig.Transport.ServerList = nil }()
	}
	errs = append(errs, o.RecommendedOptions.Validate()...)
	errs = append(errs, o.Controller.Validate()...)
	errs = append(errs, o.Webhook.Validate()...)
	errs = append(errs, o.Memory.Validate()...)
	if o.MaxWatchesPerUser < 1 {
		errs = append(errs, fmt.Errorf("--max-watches-per-user must be at least 1, got %d", o.MaxWatchesPerUser))
	}
	return utilerrors.NewAggregate(errs)
}

// runsController: the controller is on, and there is a cluster to apply to.
func (o *Options) runsController() bool { return o.Controller.Enabled && !o.standalone }

func (o *Options) embeddedEtcd() bool {
	return len(o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList) == 0
}

// Config starts the storage (the embedded etcd, unless external servers are
// given) and returns the server config over it.
func (o *Options) Config(ctx context.Context) (*apiserver.Config, error) {
	ro := o.RecommendedOptions
	if err := ro.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", serviceDNSNames,
		[]net.IP{netutils.ParseIPSloppy("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("creating self-signed certificates: %w", err)
	}

	var stopStorage func()
	if o.embeddedEtcd() {
		var target *rest.Config
		if o.EtcdCluster.clustered() {
			var err error
			if target, err = targetConfig(o.kubeconfig); err != nil {
				return nil, fmt.Errorf("an embedded etcd cluster keeps a record in the cluster: %w", err)
			}
		}
		cluster, err := o.EtcdCluster.cluster(target, o.Controller.LeaderElection.ResourceNamespace)
		if err != nil {
			return nil, err
		}
		etcd, err := embeddedetcd.Start(ctx, embeddedetcd.Config{DataDir: o.EtcdDataDir, UnsafeNoFsync: o.EtcdUnsafeNoFsync,
			Cluster: cluster, OnFailure: o.storageFailed})
		if err != nil {
			return nil, err
		}
		tls := etcd.ClientTLS()
		transport := &ro.Etcd.StorageConfig.Transport
		transport.ServerList = etcd.ClientURLs()
		transport.CertFile, transport.KeyFile, transport.TrustedCAFile = tls.CertFile, tls.KeyFile, tls.CAFile
		stopStorage = etcd.Close
	}

	serverConfig := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	serverConfig.Serializer = apiserver.Serializer
	namer := openapi.NewDefinitionNamer(apiserver.Scheme)
	serverConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(alumiiniopenapi.GetOpenAPIDefinitions, namer)
	serverConfig.OpenAPIConfig.Info.Title = "alumiini"
	serverConfig.OpenAPIConfig.Info.Version = "v1alpha1"
	serverConfig.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(alumiiniopenapi.GetOpenAPIDefinitions, namer)
	serverConfig.OpenAPIV3Config.Info.Title = "alumiini"
	serverConfig.OpenAPIV3Config.Info.Version = "v1alpha1"
	serverConfig.EffectiveVersion = compatibility.DefaultBuildEffectiveVersion()
	// Priority and Fairness frees a watch's seat once the watch starts, so
	// watches need a cap of their own. Innermost: the default chain
	// authenticates, impersonates and authorizes first, so only authorized
	// watches count.
	o.watchLimit = peruser.New(o.MaxWatchesPerUser, 10, "watches of "+v1alpha1.GroupName+" open", "stop one of them first")
	serverConfig.BuildHandlerChainFunc = func(api http.Handler, c *genericapiserver.Config) http.Handler {
		return genericapiserver.DefaultBuildHandlerChain(peruser.LimitWatches(api, o.watchLimit, c.Serializer), c)
	}
	// Watches end when a stop begins (once syncs writing have finished: at
	// most 5 s), and clients watch the next process.
	// Left open (k8s.io/apiserver's default), one watch through
	// kube-apiserver (kubectl get -w, kubectl delete --wait) held the stop
	// for the request timeout, 60 s, past a pod's 30 s grace period: SIGKILL,
	// with the Lease unreleased and etcd not closed.
	serverConfig.ShutdownWatchTerminationGracePeriod = watchTerminationGrace

	if err := ro.ApplyTo(serverConfig); err != nil {
		if stopStorage != nil {
			stopStorage()
		}
		return nil, fmt.Errorf("applying options to the server config: %w", err)
	}
	extra := apiserver.ExtraConfig{StopStorage: stopStorage, DefaultServiceAccount: o.Controller.DefaultServiceAccount}
	if o.runsController() {
		extra.PruneFinalizer = controller.FinalizerPrune
	}
	return &apiserver.Config{GenericConfig: serverConfig, ExtraConfig: extra}, nil
}

// NewServer builds a server ready to Run.
func (o *Options) NewServer(ctx context.Context) (*apiserver.Server, error) {
	config, err := o.Config(ctx)
	if err != nil {
		return nil, err
	}
	server, err := config.Complete().New()
	if err == nil {
		err = o.addController(server)
	}
	if err == nil {
		err = o.Metrics.addMetricsListener(server)
	}
	if err == nil {
		err = o.addCABundleSync(server)
	}
	if err != nil {
		if config.ExtraConfig.StopStorage != nil {
			config.ExtraConfig.StopStorage()
		}
		return nil, err
	}
	return server, nil
}

// Run serves until ctx is cancelled (SIGTERM or SIGINT in the command), or
// until the embedded etcd fails: then it shuts down and returns that error,
// so the process exits and is restarted (its liveness probe leaves etcd out).
func (o *Options) Run(ctx context.Context) error {
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	o.storageFailed = func(err error) { stop(fmt.Errorf("the embedded etcd failed: %w", err)) }
	o.softMemory = o.Memory.newSoftMemoryLimiter(klog.FromContext(ctx), o.Controller.Kustomize)
	server, err := o.NewServer(ctx)
	if err != nil {
		return err
	}
	err = server.Run(ctx)
	o.awaitController()
	if cause := context.Cause(ctx); err == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}

// awaitController waits, at most controllerStopTimeout once the server has
// stopped, for the controller, which stops with it: a leader releases its
// Lease only once its workers have stopped, and a process that exits first
// leaves the other replicas to wait for the Lease to expire (15 s).
func (o *Options) awaitController() {
	stopped := o.controllerStopped.Load()
	if stopped == nil {
		return
	}
	select {
	case <-*stopped:
	case <-time.After(controllerStopTimeout):
		klog.InfoS("Stopping before the controller stopped", "waited", controllerStopTimeout)
	}
}

// controllerStopTimeout leaves a pod's grace period room for it after the
// API server's stop (at most about 20 s: 5 for syncs writing, 10 for
// requests in flight, 5 for audit events).
const controllerStopTimeout = 5 * time.Second

type genericPostStartHookContext = genericapiserver.PostStartHookContext

// watchTerminationGrace bounds how long a stop waits for watches to end.
const watchTerminationGrace = 5 * time.Second
