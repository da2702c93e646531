package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	clientset "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned"
	"github.com/falsesystems/alumiini/test/benchkit"
	"github.com/falsesystems/alumiini/test/gitserver"
	"github.com/falsesystems/alumiini/test/localcluster"
)

// settleTime lets a phase's tail (status writes, watches starting) end
// before the next is measured.
const settleTime = 10 * time.Second

type bench struct {
	opts    options
	n       int
	dir     string
	cluster *localcluster.Cluster
	kube    kubernetes.Interface
	client  clientset.Interface
	// watcher talks to alumiini directly: the bench's own watch of every
	// status write would otherwise be kube-apiserver's CPU (the
	// aggregator proxying it), which no user's setup pays.
	watcher clientset.Interface
	r       *result
}

func run(n int, opts options) (*result, error) {
	dir, err := os.MkdirTemp("", "alumiini-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var env []string
	if opts.alumiiniEnv != "" {
		env = strings.Split(opts.alumiiniEnv, ",")
	}
	var extraArgs []string
	if opts.alumiiniArgs != "" {
		extraArgs = strings.Split(opts.alumiiniArgs, ",")
	}
	var kcm []string
	if opts.kcmQPS > 0 {
		kcm = []string{fmt.Sprintf("--kube-api-qps=%d", opts.kcmQPS), fmt.Sprintf("--kube-api-burst=%d", 2*opts.kcmQPS)}
	}
	var apiserver []string
	if opts.apiserverProfile != "" {
		apiserver = []string{"--profiling=true"}
	}
	cluster, err := localcluster.StartForTestWith(dir, localcluster.Options{AlumiiniArgs: append([]string{"--profiling"}, extraArgs...), AlumiiniEnv: env,
		ControllerManagerArgs: kcm, KubeAPIServerArgs: apiserver})
	if err != nil {
		return nil, err
	}
	defer cluster.Stop()
	config, err := cluster.RESTConfig()
	if err != nil {
		return nil, err
	}
	config.QPS, config.Burst = 1000, 2000
	direct := rest.CopyConfig(config)
	direct.Host = cluster.AlumiiniURL
	b := &bench{opts: opts, n: n, dir: dir, cluster: cluster, kube: kubernetes.NewForConfigOrDie(config),
		client: clientset.NewForConfigOrDie(config), watcher: clientset.NewForConfigOrDie(direct),
		r: &result{N: n, AlumiiniEnv: env, AlumiiniArgs: extraArgs, Objects: 4 * n, Started: time.Now().UTC(), Cores: runtime.NumCPU(),
			ControllerManagerQPS: opts.kcmQPS, QuietWaitSeconds: map[string]float64{}}}
	ctx := context.Background()
	for _, step := range []struct {
		name string
		do   func(context.Context) error
	}{
		{"preparing git repositories and namespaces", b.prepare},
		{"waiting for kube-apiserver's writes to stop", b.quiesce("kubectl")},
		{"kubectl apply --server-side", b.kubectlPhase},
		{"deleting kubectl's Services", b.deleteKubectlServices},
		{"waiting for kube-apiserver's writes to stop", b.quiesce("empty")},
		{"the empty process", b.measureEmpty},
		{"creating GitRepositories until all are Ready", b.syncPhase},
		{"waiting for kube-apiserver's writes to stop", b.quiesce("settled")},
		{"the settled process", b.measureSettled},
		{"one idle interval", b.idlePhase},
		{"one push to a shared repository", b.pushPhase},
	} {
		fmt.Fprintf(os.Stderr, "N=%d: %s\n", n, step.name)
		if err := step.do(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", step.name, err)
		}
	}
	return b.r, nil
}

// repoOf is the git repository and path of GitRepository i.
func (b *bench) repoOf(i int) (repo, path string) {
	if b.opts.distinct {
		return fmt.Sprintf("bench%05d", i), "app"
	}
	return fmt.Sprintf("bench%05d", i/10), fmt.Sprintf("apps/p%d", i%10)
}

func (b *bench) repoURL(repo string) string { return b.cluster.Git.BaseURL() + "/" + repo + ".git" }

func (b *bench) prepare(ctx context.Context) error {
	files := map[string]map[string]gitserver.File{}
	for i := 0; i < b.n; i++ {
		repo, path := b.repoOf(i)
		if files[repo] == nil {
			files[repo] = map[string]gitserver.File{}
		}
		for name, content := range objects(fmt.Sprintf("app%d", i%10), "", "hello") {
			files[repo][path+"/"+name] = gitserver.File{Content: content}
		}
	}
	b.r.GitURLs = len(files)
	for repo, f := range files {
		if _, err := b.cluster.Git.Commit(ctx, repo, "main", f); err != nil {
			return err
		}
	}
	return parallel(2*b.n, 16, func(i int) error {
		name := fmt.Sprintf("bench-%05d", i)
		if i >= b.n {
			name = fmt.Sprintf("kubectl-%05d", i-b.n)
		}
		_, err := b.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
}

// kubectlPhase applies the same 4N objects, into namespaces of their own,
// with `kubectl apply --server-side` from several processes at once.
func (b *bench) kubectlPhase(ctx context.Context) error {
	workers := b.opts.kubectlWorkers
	docs := make([][]string, workers)
	for i := 0; i < b.n; i++ {
		for _, content := range objects(fmt.Sprintf("app%d", i%10), fmt.Sprintf("kubectl-%05d", i), "hello") {
			docs[i%workers] = append(docs[i%workers], content)
		}
	}
	var files []string
	for w, d := range docs {
		file := filepath.Join(b.dir, fmt.Sprintf("kubectl-%d.yaml", w))
		if err := os.WriteFile(file, []byte(strings.Join(d, "---\n")), 0o644); err != nil {
			return err
		}
		files = append(files, file)
	}
	// The cost of alumiini's guarantee, every object dry-run before any
	// is written: the same dry-runs from kubectl.
	dryRunCounts, dryRun, err := b.measureKubectl(ctx, files, "--dry-run=server")
	if err != nil {
		return err
	}
	b.r.KubectlDryRunSeconds, b.r.KubectlDryRunCPUSeconds = dryRun.Seconds(), dryRunCounts.cpu
	counts, took, err := b.measureKubectl(ctx, files)
	if err != nil {
		return err
	}
	b.r.Kubectl.Seconds, b.r.Kubectl.CPUSeconds = took.Seconds(), counts.cpu
	b.r.Kubectl.KubeAPIServerWrites = counts.kubeWrites
	fmt.Fprintf(os.Stderr, "N=%d: kubectl dry-run %.1fs, apply %.1fs\n", b.n, dryRun.Seconds(), took.Seconds())
	return nil
}

// deleteKubectlServices deletes the Services the kubectl phase made before
// alumiini's phase: kube-apiserver's ClusterIP allocator lists every
// allocated IPAddress after each Service it creates (to update a metric),
// so a Service costs more the more a cluster holds, and alumiini's phase
// would otherwise pay for kubectl's Services too.
func (b *bench) deleteKubectlServices(ctx context.Context) error {
	return parallel(b.n, 16, func(i int) error {
		err := b.kube.CoreV1().Services(fmt.Sprintf("kubectl-%05d", i)).Delete(ctx, fmt.Sprintf("app%d", i%10), metav1.DeleteOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

// measureKubectl runs kubectlApply and returns what the counters moved by
// over it, with the kubectl processes' CPU-seconds together as "kubectl".
func (b *bench) measureKubectl(ctx context.Context, files []string, extra ...string) (counters, time.Duration, error) {
	before, err := snapshot(ctx, b.cluster)
	if err != nil {
		return counters{}, 0, err
	}
	childrenBefore := childrenCPUSeconds()
	took, err := kubectlApply(ctx, b.cluster, files, extra...)
	if err != nil {
		return counters{}, 0, err
	}
	kubectlCPU := childrenCPUSeconds() - childrenBefore
	after, err := snapshot(ctx, b.cluster)
	if err != nil {
		return counters{}, 0, err
	}
	d := after.since(before)
	d.cpu["kubectl"] = kubectlCPU
	return d, took, nil
}

// Quiet, for quiesce: at most quietWrites writes to kube-apiserver within
// quietWindow (its own lease and the like), and no wait longer than
// maxQuietWait.
const (
	quietWindow  = 5 * time.Second
	quietWrites  = 10
	maxQuietWait = time.Hour
)

// quiesce waits until kube-apiserver takes next to no writes before the
// phase named next: kube-controller-manager reacts to each phase's
// namespaces, Deployments and Services (ServiceAccounts, root CA
// ConfigMaps, ReplicaSets, EndpointSlices, Events) at its own request rate,
// and that work must not be counted in the phase after.
func (b *bench) quiesce(next string) func(context.Context) error {
	return func(ctx context.Context) error {
		start := time.Now()
		_, last, err := kubeRequests(ctx, b.cluster)
		if err != nil {
			return err
		}
		for {
			time.Sleep(quietWindow)
			_, now, err := kubeRequests(ctx, b.cluster)
			if err != nil {
				return err
			}
			if total(diff(now, last)) <= quietWrites {
				break
			}
			if time.Since(start) > maxQuietWait {
				return fmt.Errorf("kube-apiserver still takes writes after %s: %s", maxQuietWait, perVerb(diff(now, last), "%.0f"))
			}
			last = now
		}
		b.r.QuietWaitSeconds[next] = time.Since(start).Seconds()
		fmt.Fprintf(os.Stderr, "N=%d: quiet after %.0fs\n", b.n, time.Since(start).Seconds())
		return nil
	}
}

// childrenCPUSeconds is the CPU time of the bench's child processes that
// have ended (the kubectl processes; the cluster's run until the end).
func childrenCPUSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &usage); err != nil {
		return 0
	}
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano()).Seconds()
}

// kubectlApply runs one `kubectl apply --server-side` per file at once.
func kubectlApply(ctx context.Context, cluster *localcluster.Cluster, files []string, extra ...string) (time.Duration, error) {
	start := time.Now()
	var g errgroup.Group
	for _, file := range files {
		g.Go(func() error {
			args := append([]string{"apply", "--server-side", "--field-manager=bench", "-f", file}, extra...)
			out, err := cluster.Kubectl(ctx, args...)
			if err != nil {
				return fmt.Errorf("kubectl apply: %w: %s", err, lastLines(out, 5))
			}
			return nil
		})
	}
	err := g.Wait()
	return time.Since(start), err
}

// emptyIdleTime is how long the empty process's own idle CPU is measured:
// what an idle interval costs with no GitRepository at all.
const emptyIdleTime = 60 * time.Second

func (b *bench) measureEmpty(ctx context.Context) error {
	time.Sleep(settleTime)
	pid := b.cluster.AlumiiniPID()
	cpu := benchkit.CPUSeconds(pid)
	start := time.Now()
	if b.opts.emptyProfile != "" {
		if err := b.cluster.Profile(ctx, b.opts.emptyProfile, maxProfile); err != nil {
			return fmt.Errorf("profiling the empty process: %w", err)
		}
	}
	time.Sleep(emptyIdleTime - time.Since(start))
	b.r.Idle.EmptyCPUSecondsPerMinute = (benchkit.CPUSeconds(pid) - cpu) / time.Since(start).Minutes()
	mem, err := goMemoryAfterGC(ctx, b.cluster)
	if err != nil {
		return err
	}
	m := &b.r.Memory
	m.EmptyHeap, m.EmptyHeapRetained, m.EmptyStacks = mem.live, mem.retained, mem.stacks
	m.EmptyRSS, m.EmptyRSSFile, err = benchkit.Resident(b.cluster.AlumiiniPID())
	return err
}

func (b *bench) syncPhase(ctx context.Context) error {
	before, err := snapshot(ctx, b.cluster)
	if err != nil {
		return err
	}
	profiled := make(chan error, 2)
	if b.opts.cpuProfile != "" {
		go func() { profiled <- b.cluster.Profile(ctx, b.opts.cpuProfile, 15*time.Second) }()
	} else {
		profiled <- nil
	}
	if b.opts.apiserverProfile != "" {
		go func() { profiled <- b.cluster.ProfileKubeAPIServer(ctx, b.opts.apiserverProfile, 15*time.Second) }()
	} else {
		profiled <- nil
	}
	var (
		mu               sync.Mutex
		created, readyAt = map[string]time.Time{}, map[string]time.Time{}
	)
	start := time.Now()
	ready := b.watchUntil(ctx, b.n, func(repo *v1alpha1.GitRepository) bool {
		if !isReady(repo) {
			return false
		}
		mu.Lock()
		if _, seen := readyAt[repo.Name]; !seen {
			readyAt[repo.Name] = time.Now()
		}
		mu.Unlock()
		return true
	})
	if err := parallel(b.n, 16, func(i int) error {
		repo, path := b.repoOf(i)
		name := fmt.Sprintf("bench-%05d", i)
		_, err := b.client.AlumiiniV1alpha1().GitRepositories("default").Create(ctx, &v1alpha1.GitRepository{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: v1alpha1.GitRepositorySpec{URL: b.repoURL(repo), Path: path, TargetNamespace: name,
				Interval: b.opts.interval.String()},
		}, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		mu.Lock()
		created[name] = time.Now()
		mu.Unlock()
		return nil
	}); err != nil {
		return err
	}
	if err := <-ready; err != nil {
		return err
	}
	b.r.Alumiini.Seconds = time.Since(start).Seconds()
	b.r.Alumiini.LastCreateSeconds, b.r.Alumiini.CreateToReady = createToReady(start, created, readyAt)
	fmt.Fprintf(os.Stderr, "N=%d: alumiini %.1fs\n", b.n, b.r.Alumiini.Seconds)
	b.r.RatioToKubectl = b.r.Alumiini.Seconds / b.r.Kubectl.Seconds
	b.r.RatioToKubectlDryRunAndApply = b.r.Alumiini.Seconds / (b.r.Kubectl.Seconds + b.r.KubectlDryRunSeconds)
	after, err := snapshot(ctx, b.cluster)
	if err != nil {
		return err
	}
	for range 2 {
		if err := <-profiled; err != nil {
			fmt.Fprintf(os.Stderr, "bench: profiling: %v\n", err)
		}
	}
	d := after.since(before)
	b.r.Alumiini.CPUSeconds, b.r.Alumiini.GCCPUSeconds = d.cpu, d.gc
	b.r.Alumiini.RequestsPerGitRepository = map[string]float64{}
	for method, count := range d.client {
		b.r.Alumiini.RequestsPerGitRepository[method] = count / float64(b.n)
	}
	b.r.Alumiini.KubeAPIServerVerbs = d.kube
	b.r.Alumiini.KubeAPIServerWrites = d.kubeWrites
	b.r.Alumiini.OwnAPIPerGitRepository = map[string]float64{}
	for verb, count := range d.own {
		b.r.Alumiini.OwnAPIPerGitRepository[verb] = count / float64(b.n)
	}
	return nil
}

func (b *bench) measureSettled(ctx context.Context) error {
	time.Sleep(settleTime)
	mem, err := goMemoryAfterGC(ctx, b.cluster)
	if err != nil {
		return err
	}
	m := &b.r.Memory
	m.SettledHeap, m.SettledHeapRetained, m.SettledStacks = mem.live, mem.retained, mem.stacks
	if m.SettledRSS, m.SettledRSSFile, err = benchkit.Resident(b.cluster.AlumiiniPID()); err != nil {
		return err
	}
	m.RSSPerRepo = float64(m.SettledRSS-m.EmptyRSS) / float64(b.n)
	m.AnonRSSPerRepo = b.anonRSSPerRepo(m.SettledRSS, m.SettledRSSFile)
	m.HeapPerRepo = float64(m.SettledHeap-m.EmptyHeap) / float64(b.n)
	m.HeapRetainedPerRepo = float64(m.SettledHeapRetained-m.EmptyHeapRetained) / float64(b.n)
	m.StacksPerRepo = float64(m.SettledStacks-m.EmptyStacks) / float64(b.n)
	if b.opts.heapProfile == "" {
		return nil
	}
	profile, err := b.cluster.AlumiiniGet(ctx, "/debug/pprof/heap")
	if err != nil {
		return err
	}
	return os.WriteFile(b.opts.heapProfile, profile, 0o644)
}

// anonRSSPerRepo is the anonymous RSS (without mapped files) per
// GitRepository beyond the empty process's.
func (b *bench) anonRSSPerRepo(rss, files int64) float64 {
	m := b.r.Memory
	return float64((rss-files)-(m.EmptyRSS-m.EmptyRSSFile)) / float64(b.n)
}

// maxProfile: alumiini's API server ends requests after a minute (its
// --request-timeout), a profile's included.
const maxProfile = 50 * time.Second

// profileInParts profiles alumiini until end in parts of up to maxProfile:
// file, file.2, file.3, ...; `go tool pprof file file.2 ...` reads them as
// one. A remainder under 5 s is left out.
func (b *bench) profileInParts(ctx context.Context, file string, end time.Time) error {
	for part := 1; time.Until(end) >= 5*time.Second; part++ {
		name := file
		if part > 1 {
			name = fmt.Sprintf("%s.%d", file, part)
		}
		if err := b.cluster.Profile(ctx, name, min(time.Until(end), maxProfile)); err != nil {
			return err
		}
	}
	return nil
}

// idlePhase watches one interval in which git holds nothing new.
func (b *bench) idlePhase(ctx context.Context) error {
	b.cluster.Git.ResetCounts()
	before, err := snapshot(ctx, b.cluster)
	if err != nil {
		return err
	}
	start := time.Now()
	if b.opts.idleProfile != "" {
		if err := b.profileInParts(ctx, b.opts.idleProfile, start.Add(b.opts.interval)); err != nil {
			return fmt.Errorf("profiling the idle interval: %w", err)
		}
	}
	time.Sleep(time.Until(start.Add(b.opts.interval)))
	after, err := snapshot(ctx, b.cluster)
	if err != nil {
		return err
	}
	m := &b.r.Memory
	if m.IdleRSS, m.IdleRSSFile, err = benchkit.Resident(b.cluster.AlumiiniPID()); err != nil {
		return err
	}
	m.IdleAnonRSSPerRepo = b.anonRSSPerRepo(m.IdleRSS, m.IdleRSSFile)
	d := after.since(before)
	b.r.Idle.Seconds, b.r.Idle.CPUSeconds, b.r.Idle.GCCPUSeconds = b.opts.interval.Seconds(), d.cpu["alumiini"], d.gc
	b.r.Idle.Requests, b.r.Idle.OwnAPIWrites, b.r.Idle.OwnAPIRequests = d.client, writes(d.own), d.own
	counted := map[string]bool{}
	for i := 0; i < b.n; i++ {
		if repo, _ := b.repoOf(i); !counted[repo] {
			counted[repo] = true
			counts := b.cluster.Git.Requests(repo + ".git")
			b.r.Idle.RefListings += counts.RefListings
			b.r.Idle.Fetches += counts.Fetches
		}
	}
	return nil
}

// pushPhase commits to the first git repository and sends its push
// webhook; it ends when every GitRepository of it shows the commit.
func (b *bench) pushPhase(ctx context.Context) error {
	repo, _ := b.repoOf(0)
	files := map[string]gitserver.File{}
	var names []string
	for i := 0; i < b.n; i++ {
		if r, path := b.repoOf(i); r == repo {
			names = append(names, fmt.Sprintf("bench-%05d", i))
			for name, content := range objects(fmt.Sprintf("app%d", i%10), "", "pushed") {
				files[path+"/"+name] = gitserver.File{Content: content}
			}
		}
	}
	commit, err := b.cluster.Git.Commit(ctx, repo, "main", files)
	if err != nil {
		return err
	}
	start := time.Now()
	shown := b.watchUntil(ctx, len(names), func(r *v1alpha1.GitRepository) bool {
		return r.Status.LastSyncedCommit == commit && isReady(r)
	})
	hook := benchkit.GitHubPush{Repository: map[string]string{"clone_url": b.repoURL(repo)}, Commit: commit, Delivery: "bench"}
	status, answer, err := hook.Send(ctx, &http.Client{Timeout: 30 * time.Second}, b.cluster.WebhookURL+"/hooks/github", b.cluster.WebhookSecret)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("the webhook answered %d: %s", status, answer)
	}
	if err := <-shown; err != nil {
		return err
	}
	b.r.Push = push{GitRepositories: len(names), Seconds: time.Since(start).Seconds()}
	return nil
}

// createToReady: when the last create was answered, from start, and how
// long each GitRepository took from its create's answer to its Ready (0 when
// the watch saw it Ready first). Called once every one is Ready.
func createToReady(start time.Time, created, readyAt map[string]time.Time) (float64, *spread) {
	var last time.Time
	var took []time.Duration
	for name, at := range created {
		if at.After(last) {
			last = at
		}
		if ready, ok := readyAt[name]; ok {
			took = append(took, max(0, ready.Sub(at)))
		}
	}
	return last.Sub(start).Seconds(), spreadOf(took)
}

func isReady(repo *v1alpha1.GitRepository) bool {
	for _, c := range repo.Status.Conditions {
		if c.Type == v1alpha1.ConditionReady {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

// watchUntil watches the GitRepositories until want of them satisfy ok;
// it starts before it returns, so nothing done after is missed. Watching
// rather than polling: listing thousands through the aggregator would cost
// more CPU than what is measured. A watch the server ends is started anew
// from a fresh list.
func (b *bench) watchUntil(ctx context.Context, want int, ok func(*v1alpha1.GitRepository) bool) <-chan error {
	done := make(chan error, 1)
	repos := b.watcher.AlumiiniV1alpha1().GitRepositories("default")
	met := map[string]bool{}
	satisfied := 0
	note := func(repo *v1alpha1.GitRepository) {
		was, now := met[repo.Name], ok(repo)
		met[repo.Name] = now
		if now && !was {
			satisfied++
		} else if was && !now {
			satisfied--
		}
	}
	count := func() int { return satisfied }
	watchFromList := func() (watch.Interface, error) {
		list, err := repos.List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for i := range list.Items {
			note(&list.Items[i])
		}
		return repos.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	}
	w, err := watchFromList()
	if err != nil {
		done <- err
		return done
	}
	go func() {
		defer func() { w.Stop() }()
		deadline := time.After(30 * time.Minute)
		for count() < want {
			select {
			case event, open := <-w.ResultChan():
				if !open {
					if w, err = watchFromList(); err != nil {
						done <- fmt.Errorf("watching again with %d of %d done: %w", count(), want, err)
						return
					}
					continue
				}
				if repo, isRepo := event.Object.(*v1alpha1.GitRepository); isRepo {
					note(repo)
				}
			case <-deadline:
				done <- fmt.Errorf("only %d of %d done after 30 minutes", count(), want)
				return
			}
		}
		done <- nil
	}()
	return done
}

// objects are one app's manifests; namespace "" leaves it to alumiini.
func objects(app, namespace, greeting string) map[string]string {
	meta := "metadata:\n  name: " + app + "\n"
	if namespace != "" {
		meta += "  namespace: " + namespace + "\n"
	}
	return map[string]string{
		"deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\n" + meta + `spec:
  replicas: 0
  selector:
    matchLabels: {app: ` + app + `}
  template:
    metadata:
      labels: {app: ` + app + `}
    spec:
      serviceAccountName: ` + app + `
      containers:
      - name: app
        image: registry.k8s.io/pause:3.10
`,
		"serviceaccount.yaml": "apiVersion: v1\nkind: ServiceAccount\n" + meta,
		"service.yaml":        "apiVersion: v1\nkind: Service\n" + meta + "spec:\n  selector: {app: " + app + "}\n  ports:\n  - port: 80\n",
		"configmap.yaml":      "apiVersion: v1\nkind: ConfigMap\n" + meta + "data:\n  greeting: " + greeting + "\n",
	}
}

func parallel(n, workers int, f func(int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs
}

func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
