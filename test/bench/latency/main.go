// Command latency measures how soon alumiini acts on a change, on the local
// control plane of test/localcluster: a push announced by a signed GitHub
// webhook, a push followed by a sync request, a hand edit or deletion of an
// applied object, and one push that moves many GitRepositories at once. It
// prints percentiles next to the targets of the issue; a slow figure never
// fails it, only a real error does. Run it with `make bench-latency`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	clientset "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned"
	alumiiniinformers "github.com/falsesystems/alumiini/pkg/generated/informers/externalversions"
	"github.com/falsesystems/alumiini/test/benchkit"
	"github.com/falsesystems/alumiini/test/gitserver"
	"github.com/falsesystems/alumiini/test/localcluster"
)

// The phases, in the order they run; -skip names them.
const (
	phasePush   = "push"
	phaseSync   = "sync"
	phaseDrift  = "drift"
	phaseFanout = "fanout"
)

var phases = []string{phasePush, phaseSync, phaseDrift, phaseFanout}

const (
	// repoNamespace holds every GitRepository, as in the e2e tests.
	repoNamespace = "default"
	latencyName   = "latency"
	fanoutName    = "fanout"
	configMaps    = 20

	// applyTimeout: a push not applied, or drift not corrected, within it
	// is an error of alumiini, not a slow figure.
	applyTimeout = 30 * time.Second
	readyTimeout = 2 * time.Minute
	fanoutWait   = time.Minute

	// fightWindow is pkg/controller's: drift of one object within it of
	// its last correction counts as a fight with another writer and is
	// corrected later each time. Hits on one object are kept further apart.
	fightWindow = 15 * time.Second
	driftGap    = fightWindow + time.Second

	// webhookGap keeps deliveries under the receiver's default rate limit
	// (--webhook-rate-limit 10 per second from one address).
	webhookGap = 100 * time.Millisecond
	// pushGap keeps the pushes to one GitRepository further apart than
	// pkg/controller's pushWindow (1s): pushes closer than that are folded
	// into one sync at the window's end (at most two syncs a second), which
	// is what the e2e test TestABurstOfPushesCoalesces checks; this phase
	// measures a push on its own.
	pushGap = 1100 * time.Millisecond

	// The flux figures measured on this machine with its manual trigger.
	fluxNote = "flux manual trigger here: p50 1.28s, max 1.55s"
)

type options struct {
	rounds, syncRounds, driftRounds, fanout int
	skip                                    map[string]bool
	jsonFile                                string
	keep                                    bool
}

func main() {
	var opts options
	flag.IntVar(&opts.rounds, "rounds", 100, "rounds of commit + signed webhook")
	flag.IntVar(&opts.syncRounds, "sync-rounds", 20, "rounds of commit + sync request, without a webhook")
	flag.IntVar(&opts.driftRounds, "drift-rounds", 50, "rounds of hand edit or deletion of an applied ConfigMap")
	flag.IntVar(&opts.fanout, "fanout", 100, "GitRepositories moved by one push")
	skip := flag.String("skip", "", "comma-separated phases to skip: "+strings.Join(phases, ", "))
	flag.StringVar(&opts.jsonFile, "json", "", "write all figures as JSON to this file")
	flag.BoolVar(&opts.keep, "keep", false, "keep the cluster directory (logs, data) after the run")
	flag.Parse()
	opts.skip = map[string]bool{}
	for _, p := range strings.Split(*skip, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if !slices.Contains(phases, p) {
			fmt.Fprintf(os.Stderr, "latency: -skip: unknown phase %q; phases are %s\n", p, strings.Join(phases, ", "))
			os.Exit(2)
		}
		opts.skip[p] = true
	}
	if opts.rounds < 1 || opts.syncRounds < 1 || opts.driftRounds < 1 || opts.fanout < 1 {
		fmt.Fprintln(os.Stderr, "latency: -rounds, -sync-rounds, -drift-rounds and -fanout must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, opts)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "latency: %v\n", err)
		os.Exit(1)
	}
}

func run(parent context.Context, opts options) (err error) {
	dir, err := os.MkdirTemp("", "alumiini-latency-")
	if err != nil {
		return err
	}
	defer func() {
		if opts.keep {
			fmt.Fprintf(os.Stderr, "cluster directory kept: %s\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	cluster, err := localcluster.StartForTest(dir, false)
	if err != nil {
		return fmt.Errorf("starting the local control plane (logs under %s): %w", filepath.Join(dir, "cluster", "logs"), err)
	}
	defer cluster.Stop()
	defer func() {
		if err != nil {
			showLog(cluster, opts.keep)
		}
	}()
	// Cancelled before the cluster stops, so the informers end quietly.
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	b, err := newBench(ctx, cluster)
	if err != nil {
		return err
	}
	if !opts.skip[phasePush] || !opts.skip[phaseSync] || !opts.skip[phaseDrift] {
		if err := b.setupLatency(ctx); err != nil {
			return fmt.Errorf("preparing GitRepository %s: %w", latencyName, err)
		}
	}
	steps := []struct {
		phase string
		run   func(context.Context) error
	}{
		{phasePush, func(ctx context.Context) error { return b.pushPhase(ctx, opts.rounds) }},
		{phaseSync, func(ctx context.Context) error { return b.syncPhase(ctx, opts.syncRounds) }},
		{phaseDrift, func(ctx context.Context) error { return b.driftPhase(ctx, opts.driftRounds) }},
		{phaseFanout, func(ctx context.Context) error { return b.fanoutPhase(ctx, opts.fanout) }},
	}
	for _, s := range steps {
		if opts.skip[s.phase] {
			continue
		}
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("phase %s: %w", s.phase, err)
		}
	}
	b.results.print(os.Stdout)
	if opts.jsonFile != "" {
		data, err := json.MarshalIndent(b.results, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(opts.jsonFile, append(data, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Printf("figures written to %s\n", opts.jsonFile)
	}
	return nil
}

// showLog prints where alumiini's log is and its last lines.
func showLog(cluster *localcluster.Cluster, kept bool) {
	path := cluster.LogPath("alumiini")
	where := "removed with the cluster directory; run with -keep to keep it"
	if kept {
		where = "kept"
	}
	fmt.Fprintf(os.Stderr, "alumiini log: %s (%s)\n", path, where)
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	fmt.Fprintf(os.Stderr, "--- end of alumiini log ---\n%s\n---\n", strings.Join(lines, "\n"))
}

// bench holds the clients and what the phases share.
type bench struct {
	cluster *localcluster.Cluster
	kube    kubernetes.Interface
	client  clientset.Interface
	hooks   *http.Client

	repos *observer[*v1alpha1.GitRepository]
	// configMaps observes the ConfigMaps of each target namespace.
	configMaps map[string]*observer[*corev1.ConfigMap]
	// values is what git holds now in data.round of each latency ConfigMap.
	values   map[string]string
	lastHook time.Time
	results  results
}

func newBench(ctx context.Context, cluster *localcluster.Cluster) (*bench, error) {
	config, err := cluster.RESTConfig()
	if err != nil {
		return nil, err
	}
	config.QPS, config.Burst = 1000, 2000
	b := &bench{
		cluster:    cluster,
		kube:       kubernetes.NewForConfigOrDie(config),
		client:     clientset.NewForConfigOrDie(config),
		hooks:      &http.Client{Timeout: 30 * time.Second},
		configMaps: map[string]*observer[*corev1.ConfigMap]{},
		values:     map[string]string{},
	}
	b.results.Started = time.Now().UTC()
	factory := alumiiniinformers.NewSharedInformerFactoryWithOptions(b.client, 0, alumiiniinformers.WithNamespace(repoNamespace))
	informer := factory.Alumiini().V1alpha1().GitRepositories().Informer()
	if b.repos, err = observe[*v1alpha1.GitRepository](informer); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return nil, fmt.Errorf("the GitRepository informer did not sync")
	}
	return b, nil
}

// watchConfigMaps creates namespace and starts observing its ConfigMaps.
func (b *bench) watchConfigMaps(ctx context.Context, namespace string) error {
	_, err := b.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", namespace, err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(b.kube, 0, informers.WithNamespace(namespace))
	informer := factory.Core().V1().ConfigMaps().Informer()
	o, err := observe[*corev1.ConfigMap](informer)
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return fmt.Errorf("the ConfigMap informer of %s did not sync", namespace)
	}
	b.configMaps[namespace] = o
	return nil
}

func configMapName(i int) string { return fmt.Sprintf("cm-%02d", i%configMaps) }

func configMapYAML(name, round string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\ndata:\n  round: \"" + round + "\"\n"
}

func gitRepository(name, url, path, target string) *v1alpha1.GitRepository {
	return &v1alpha1.GitRepository{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: repoNamespace},
		Spec: v1alpha1.GitRepositorySpec{
			URL:             url,
			Path:            path,
			Interval:        "24h",
			TargetNamespace: target,
		},
	}
}

func (b *bench) repoURL(repo string) string { return b.cluster.Git.BaseURL() + "/" + repo + ".git" }

// syncedAt matches a Ready GitRepository that has applied commit.
func syncedAt(commit string) func(*v1alpha1.GitRepository) bool {
	return func(r *v1alpha1.GitRepository) bool {
		return r.Status.LastSyncedCommit == commit && meta.IsStatusConditionTrue(r.Status.Conditions, v1alpha1.ConditionReady)
	}
}

// setupLatency makes the repository latency.git with 20 ConfigMaps under
// deploy/ and GitRepository latency applying them to namespace latency with
// alumiini's own identity, and waits until it is Ready.
func (b *bench) setupLatency(ctx context.Context) error {
	if err := b.watchConfigMaps(ctx, latencyName); err != nil {
		return err
	}
	files := map[string]gitserver.File{}
	for i := range configMaps {
		name := configMapName(i)
		b.values[name] = "initial"
		files["deploy/"+name+".yaml"] = gitserver.File{Content: configMapYAML(name, "initial")}
	}
	commit, err := b.cluster.Git.Commit(ctx, latencyName, "main", files)
	if err != nil {
		return err
	}
	ready := b.repos.expect(allOf([]string{latencyName}, func(r *v1alpha1.GitRepository) string { return r.Name }, syncedAt(commit)))
	repo := gitRepository(latencyName, b.repoURL(latencyName), "deploy", latencyName)
	if _, err := b.client.AlumiiniV1alpha1().GitRepositories(repoNamespace).Create(ctx, repo, metav1.CreateOptions{}); err != nil {
		ready.cancel()
		return err
	}
	if _, err := ready.wait(ctx, readyTimeout); err != nil {
		return fmt.Errorf("not Ready at commit %s: %w; %s", commit, err, b.describe(ctx, latencyName))
	}
	return nil
}

// describe says where a GitRepository stands, for errors.
func (b *bench) describe(ctx context.Context, name string) string {
	r, err := b.client.AlumiiniV1alpha1().GitRepositories(repoNamespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("reading GitRepository %s: %v", name, err)
	}
	s := r.Status
	text := fmt.Sprintf("GitRepository %s/%s: phase %s, lastSyncedCommit %s, lastAttemptedCommit %s, message %q",
		r.Namespace, r.Name, s.Phase, s.LastSyncedCommit, s.LastAttemptedCommit, s.Message)
	if p := s.LastPush; p != nil {
		text += fmt.Sprintf(", lastPush {delivery %s, commit %s, received %s}", p.DeliveryID, p.Commit, p.ReceivedAt.UTC().Format(time.RFC3339Nano))
	}
	return text
}

// describeConfigMap says what a ConfigMap of namespace holds now, for errors.
func (b *bench) describeConfigMap(ctx context.Context, namespace, name string) string {
	cm, err := b.kube.CoreV1().ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Sprintf("ConfigMap %s/%s: %v", namespace, name, err)
	}
	return fmt.Sprintf("ConfigMap %s/%s holds round %q (resourceVersion %s)", namespace, name, cm.Data["round"], cm.ResourceVersion)
}

// hasRound matches ConfigMap name holding round.
func hasRound(name, round string) func(*corev1.ConfigMap, bool) bool {
	return func(cm *corev1.ConfigMap, deleted bool) bool {
		return !deleted && cm.Name == name && cm.Data["round"] == round
	}
}

// paceWebhook sleeps until gap has passed since the last delivery.
func (b *bench) paceWebhook(gap time.Duration) {
	if wait := time.Until(b.lastHook.Add(gap)); wait > 0 {
		time.Sleep(wait)
	}
}

// pushAnswer is the receiver's JSON answer.
type pushAnswer struct {
	Provider  string `json:"provider"`
	Delivery  string `json:"delivery"`
	Triggered []struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
		Ref       string `json:"ref"`
		Commit    string `json:"commit"`
	} `json:"triggered"`
	Skipped []struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
		Reason    string `json:"reason"`
	} `json:"skipped"`
	Message string `json:"message"`
	Error   string `json:"error"`
}

// triggered counts the GitRepositories the answer says it triggered at commit.
func (a *pushAnswer) triggered(commit string) int {
	n := 0
	for _, t := range a.Triggered {
		if t.Commit == commit && t.Ref == "refs/heads/main" && t.Namespace == repoNamespace {
			n++
		}
	}
	return n
}

// sendPush delivers a GitHub push event for commit on repo's main, signed
// with the platform secret, and wants a 200 answer naming want
// GitRepositories triggered at that commit.
func (b *bench) sendPush(ctx context.Context, repo, commit, delivery string, want int) (*pushAnswer, error) {
	base := b.cluster.Git.BaseURL()
	host := strings.TrimPrefix(strings.TrimPrefix(base, "http://"), "https://")
	if h, _, ok := strings.Cut(host, ":"); ok {
		host = h
	}
	push := benchkit.GitHubPush{Commit: commit, Delivery: delivery, Repository: map[string]string{
		"clone_url": b.repoURL(repo),
		"html_url":  base + "/" + repo,
		"ssh_url":   "git@" + host + ":" + repo + ".git",
	}}
	b.lastHook = time.Now()
	status, raw, err := push.Send(ctx, b.hooks, b.cluster.WebhookURL+"/hooks/github", b.cluster.WebhookSecret)
	if err != nil {
		return nil, err
	}
	var answer pushAnswer
	if err := json.Unmarshal(raw, &answer); err != nil {
		return nil, fmt.Errorf("the webhook answered %d with %q: %w", status, raw, err)
	}
	if status != http.StatusOK || answer.triggered(commit) != want {
		return &answer, fmt.Errorf("the webhook answered %s, triggering %d GitRepositories at %s where %d were expected: %s",
			http.StatusText(status), answer.triggered(commit), commit, want, strings.TrimSpace(string(raw)))
	}
	return &answer, nil
}

// requestSync POSTs {} to the sync subresource of GitRepository name,
// without waiting for the sync.
func (b *bench) requestSync(ctx context.Context, name string) error {
	raw, err := b.client.AlumiiniV1alpha1().RESTClient().Post().
		Namespace(repoNamespace).Resource("gitrepositories").Name(name).SubResource("sync").
		SetHeader("Content-Type", "application/json").Body([]byte("{}")).DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("requesting a sync of %s: %w: %s", name, err, raw)
	}
	var answer v1alpha1.GitRepositorySyncRequest
	if err := json.Unmarshal(raw, &answer); err != nil || answer.Status.ID == "" {
		return fmt.Errorf("the sync subresource answered %q", raw)
	}
	return nil
}

// pushPhase: each round commits a change to one ConfigMap, delivers the
// signed webhook and times until the ConfigMap holds the change.
func (b *bench) pushPhase(ctx context.Context, rounds int) error {
	fmt.Fprintf(os.Stderr, "push: %d rounds of commit + signed GitHub webhook\n", rounds)
	fromHook, fromCommit := make([]time.Duration, 0, rounds), make([]time.Duration, 0, rounds)
	cpu := b.cpuStart()
	for i := range rounds {
		name, round := configMapName(i), fmt.Sprintf("push-%03d", i)
		b.paceWebhook(pushGap)
		applied := b.configMaps[latencyName].expect(hasRound(name, round))
		committing := time.Now()
		commit, err := b.cluster.Git.Commit(ctx, latencyName, "main", map[string]gitserver.File{"deploy/" + name + ".yaml": {Content: configMapYAML(name, round)}})
		if err != nil {
			applied.cancel()
			return err
		}
		b.values[name] = round
		sent := time.Now()
		if _, err := b.sendPush(ctx, latencyName, commit, fmt.Sprintf("latency-push-%03d", i), 1); err != nil {
			applied.cancel()
			return fmt.Errorf("round %d: %w", i, err)
		}
		at, err := applied.wait(ctx, applyTimeout)
		if err != nil {
			return fmt.Errorf("round %d: commit %s (ConfigMap %s round %s) was not applied: %w; %s; %s", i, commit, name, round, err,
				b.describeConfigMap(ctx, latencyName, name), b.describe(ctx, latencyName))
		}
		fromHook, fromCommit = append(fromHook, at.Sub(sent)), append(fromCommit, at.Sub(committing))
		progress(phasePush, i, rounds, at.Sub(sent))
	}
	cpuSeconds := b.cpuSince(cpu)
	pushTarget := target{p50: 300 * time.Millisecond, p99: time.Second, text: "p50 ≤ 300ms, p99 ≤ 1s"}
	b.results.add(phasePush, "push → applied (webhook sent → ConfigMap seen)", fromHook, pushTarget, fluxNote)
	b.results.add(phasePush, "push → applied (commit start → ConfigMap seen)", fromCommit, target{}, "")
	b.results.cpu(phasePush, cpuSeconds, rounds)
	return nil
}

// syncPhase: each round commits, requests a sync through the subresource
// instead of a webhook, and times until the ConfigMap holds the change.
func (b *bench) syncPhase(ctx context.Context, rounds int) error {
	fmt.Fprintf(os.Stderr, "sync: %d rounds of commit + POST .../gitrepositories/%s/sync, no webhook\n", rounds, latencyName)
	fromRequest, fromCommit := make([]time.Duration, 0, rounds), make([]time.Duration, 0, rounds)
	cpu := b.cpuStart()
	for i := range rounds {
		name, round := configMapName(i), fmt.Sprintf("sync-%03d", i)
		applied := b.configMaps[latencyName].expect(hasRound(name, round))
		committing := time.Now()
		commit, err := b.cluster.Git.Commit(ctx, latencyName, "main", map[string]gitserver.File{"deploy/" + name + ".yaml": {Content: configMapYAML(name, round)}})
		if err != nil {
			applied.cancel()
			return err
		}
		b.values[name] = round
		sent := time.Now()
		if err := b.requestSync(ctx, latencyName); err != nil {
			applied.cancel()
			return fmt.Errorf("round %d: %w", i, err)
		}
		at, err := applied.wait(ctx, applyTimeout)
		if err != nil {
			return fmt.Errorf("round %d: commit %s (ConfigMap %s round %s) was not applied after a sync request: %w; %s; %s", i, commit, name, round, err,
				b.describeConfigMap(ctx, latencyName, name), b.describe(ctx, latencyName))
		}
		fromRequest, fromCommit = append(fromRequest, at.Sub(sent)), append(fromCommit, at.Sub(committing))
		progress(phaseSync, i, rounds, at.Sub(sent))
	}
	cpuSeconds := b.cpuSince(cpu)
	b.results.add(phaseSync, "sync request → applied (POST sync → ConfigMap seen)", fromRequest, target{}, fluxNote)
	b.results.add(phaseSync, "sync request → applied (commit start → ConfigMap seen)", fromCommit, target{}, "")
	b.results.cpu(phaseSync, cpuSeconds, rounds)
	return nil
}

// driftPhase alternates a hand edit and a deletion of one applied
// ConfigMap, rotating over all of them, and times until alumiini has put it
// back. A round starts only when its ConfigMap's last correction is
// driftGap old, so no round is taken for a fight.
func (b *bench) driftPhase(ctx context.Context, rounds int) error {
	hits := (rounds + configMaps - 1) / configMaps
	least := time.Duration(hits-1) * driftGap
	fmt.Fprintf(os.Stderr, "drift: %d rounds alternating patch and delete over %d ConfigMaps; one ConfigMap is hit at most every %s "+
		"(alumiini's %s fight window + 1s), so the phase takes at least %s\n", rounds, configMaps, driftGap, fightWindow, least)
	if least > 5*time.Minute {
		fmt.Fprintf(os.Stderr, "drift: warning: -drift-rounds %d makes this phase long (at least %s)\n", rounds, least)
	}
	var patched, deleted, all []time.Duration
	corrected := map[string]time.Time{}
	cms := b.kube.CoreV1().ConfigMaps(latencyName)
	cpu := b.cpuStart()
	phaseStart := time.Now()
	for i := range rounds {
		name, want := configMapName(i), b.values[configMapName(i)]
		if last, ok := corrected[name]; ok {
			time.Sleep(time.Until(last.Add(driftGap)))
		}
		edit, kind := i%2 == 0, "deleted"
		if edit {
			kind = "patched"
		}
		var back *waiter[*corev1.ConfigMap]
		var err error
		if edit {
			hacked := fmt.Sprintf("hand-edit-%03d", i)
			back = b.configMaps[latencyName].expect(after(hasRound(name, hacked), hasRound(name, want)))
			patch := fmt.Sprintf(`{"data":{"round":%q}}`, hacked)
			_, err = cms.Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "bench-hand-edit"})
		} else {
			back = b.configMaps[latencyName].expect(after(isDeleted(name), hasRound(name, want)))
			err = cms.Delete(ctx, name, metav1.DeleteOptions{})
		}
		written := time.Now()
		if err != nil {
			back.cancel()
			return fmt.Errorf("round %d: changing ConfigMap %s: %w", i, name, err)
		}
		at, err := back.wait(ctx, applyTimeout)
		if err != nil {
			return fmt.Errorf("round %d: ConfigMap %s (%s) was not put back to round %q: %w; %s; %s", i, name, kind, want, err, b.describeConfigMap(ctx, latencyName, name), b.describe(ctx, latencyName))
		}
		corrected[name] = at
		took := at.Sub(written)
		if edit {
			patched = append(patched, took)
		} else {
			deleted = append(deleted, took)
		}
		all = append(all, took)
		progress(phaseDrift, i, rounds, took)
	}
	cpuSeconds := b.cpuSince(cpu)
	fmt.Fprintf(os.Stderr, "drift: the phase took %s\n", time.Since(phaseStart).Round(time.Second))
	driftTarget := target{p50: time.Second, text: "p50 ≤ 1s"}
	b.results.add(phaseDrift, "drift corrected: patch (write → restored)", patched, driftTarget, "")
	b.results.add(phaseDrift, "drift corrected: delete (write → recreated)", deleted, driftTarget, "")
	b.results.add(phaseDrift, "drift corrected: both", all, driftTarget, "")
	b.results.cpu(phaseDrift, cpuSeconds, rounds)
	return nil
}

func isDeleted(name string) func(*corev1.ConfigMap, bool) bool {
	return func(cm *corev1.ConfigMap, deleted bool) bool { return deleted && cm.Name == name }
}

// after matches once first has matched an earlier event and then matches.
func after[T any](first, then func(T, bool) bool) func(T, bool) bool {
	seen := false
	return func(obj T, deleted bool) bool {
		if !seen {
			seen = first(obj, deleted)
			return false
		}
		return then(obj, deleted)
	}
}

// allOf matches once every name has had an object that matches ok.
func allOf[T any](names []string, nameOf func(T) string, ok func(T) bool) func(T, bool) bool {
	left := map[string]bool{}
	for _, n := range names {
		left[n] = true
	}
	return func(obj T, deleted bool) bool {
		if !deleted && left[nameOf(obj)] && ok(obj) {
			delete(left, nameOf(obj))
		}
		return len(left) == 0
	}
}

// fanoutPhase: n GitRepositories each apply their own path of one git
// repository; one commit changes every path and one webhook announces it.
func (b *bench) fanoutPhase(ctx context.Context, n int) error {
	fmt.Fprintf(os.Stderr, "fanout: %d GitRepositories on one git repository, one commit, one webhook\n", n)
	if err := b.watchConfigMaps(ctx, fanoutName); err != nil {
		return err
	}
	repoNames, cmNames := make([]string, n), make([]string, n)
	for i := range n {
		repoNames[i], cmNames[i] = fmt.Sprintf("fan-%03d", i), fmt.Sprintf("cm-%03d", i)
	}
	files := func(round string) map[string]gitserver.File {
		f := map[string]gitserver.File{}
		for i := range n {
			f[fmt.Sprintf("apps/%03d/cm.yaml", i)] = gitserver.File{Content: configMapYAML(cmNames[i], round)}
		}
		return f
	}
	commit, err := b.cluster.Git.Commit(ctx, fanoutName, "main", files("initial"))
	if err != nil {
		return err
	}
	repoName := func(r *v1alpha1.GitRepository) string { return r.Name }
	ready := b.repos.expect(allOf(repoNames, repoName, syncedAt(commit)))
	created := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			repo := gitRepository(repoNames[i], b.repoURL(fanoutName), fmt.Sprintf("apps/%03d", i), fanoutName)
			_, err := b.client.AlumiiniV1alpha1().GitRepositories(repoNamespace).Create(gctx, repo, metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		ready.cancel()
		return fmt.Errorf("creating the GitRepositories: %w", err)
	}
	if _, err := ready.wait(ctx, readyTimeout); err != nil {
		return fmt.Errorf("not all %d GitRepositories Ready at %s: %w; first: %s", n, commit, err, b.describe(ctx, repoNames[0]))
	}
	fmt.Fprintf(os.Stderr, "fanout: %d GitRepositories created to all Ready in %s\n", n, time.Since(created).Round(time.Millisecond))
	// The setup's last status writes and drift watches settle first, so
	// the push is measured alone.
	time.Sleep(2 * time.Second)

	cmName := func(cm *corev1.ConfigMap) string { return cm.Name }
	cpu := b.cpuStart()
	b.paceWebhook(webhookGap)
	committing := time.Now()
	next, err := b.cluster.Git.Commit(ctx, fanoutName, "main", files("fanned-out"))
	if err != nil {
		return err
	}
	// Registered once the commit is known: with interval 24h nothing but
	// the webhook makes alumiini look at it.
	synced := b.repos.expect(allOf(repoNames, repoName, syncedAt(next)))
	applied := b.configMaps[fanoutName].expect(allOf(cmNames, cmName, func(cm *corev1.ConfigMap) bool { return cm.Data["round"] == "fanned-out" }))
	sent := time.Now()
	answer, err := b.sendPush(ctx, fanoutName, next, "latency-fanout", n)
	if err != nil {
		synced.cancel()
		applied.cancel()
		return err
	}
	statusAt, err := synced.wait(ctx, fanoutWait)
	if err != nil {
		return fmt.Errorf("not all %d GitRepositories show commit %s in status.lastSyncedCommit: %w; first: %s", n, next, err, b.describe(ctx, repoNames[0]))
	}
	appliedAt, err := applied.wait(ctx, fanoutWait)
	if err != nil {
		return fmt.Errorf("not all %d ConfigMaps hold commit %s's value: %w; first: %s", n, next, err, b.describeConfigMap(ctx, fanoutName, cmNames[0]))
	}
	cpuSeconds := b.cpuSince(cpu)
	fanTarget := target{max: 3 * time.Second, text: "≤ 3s for 100"}
	label := fmt.Sprintf("fan-out %d: webhook sent → all status.lastSyncedCommit", n)
	b.results.add(phaseFanout, label, []time.Duration{statusAt.Sub(sent)}, fanTarget, "")
	b.results.add(phaseFanout, fmt.Sprintf("fan-out %d: webhook sent → all ConfigMaps seen", n), []time.Duration{appliedAt.Sub(sent)}, fanTarget, "")
	b.results.add(phaseFanout, fmt.Sprintf("fan-out %d: commit start → all ConfigMaps seen", n), []time.Duration{appliedAt.Sub(committing)}, target{}, "")
	b.results.FanoutTriggered = answer.triggered(next)
	b.results.cpu(phaseFanout, cpuSeconds, 1)
	return nil
}

func progress(phase string, i, rounds int, took time.Duration) {
	if (i+1)%10 == 0 || i+1 == rounds {
		fmt.Fprintf(os.Stderr, "%s: round %d/%d, last %s\n", phase, i+1, rounds, took.Round(time.Millisecond))
	}
}

// cpuStart reads alumiini's CPU seconds; -1 when the cluster gives no PID.
func (b *bench) cpuStart() float64 { return benchkit.CPUSeconds(b.cluster.AlumiiniPID()) }

func (b *bench) cpuSince(start float64) float64 {
	now := benchkit.CPUSeconds(b.cluster.AlumiiniPID())
	if start < 0 || now < 0 {
		return -1
	}
	return now - start
}

// observer hands the events of an informer, timestamped as they arrive, to
// waiters registered before the write they wait for: no event is missed
// and no polling delay is added to what is measured.
type observer[T any] struct {
	mu      sync.Mutex
	waiters map[*waiter[T]]bool
}

// waiter waits for the first event its match accepts; match may keep state,
// it sees every event in order.
type waiter[T any] struct {
	o     *observer[T]
	match func(obj T, deleted bool) bool
	done  chan time.Time
}

func observe[T any](informer cache.SharedIndexInformer) (*observer[T], error) {
	o := &observer[T]{waiters: map[*waiter[T]]bool{}}
	_, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { o.notify(obj, false) },
		UpdateFunc: func(_, obj any) { o.notify(obj, false) },
		DeleteFunc: func(obj any) {
			if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tombstone.Obj
			}
			o.notify(obj, true)
		},
	})
	return o, err
}

func (o *observer[T]) notify(obj any, deleted bool) {
	now := time.Now()
	t, ok := obj.(T)
	if !ok {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for w := range o.waiters {
		if w.match(t, deleted) {
			w.done <- now
			delete(o.waiters, w)
		}
	}
}

func (o *observer[T]) expect(match func(T, bool) bool) *waiter[T] {
	w := &waiter[T]{o: o, match: match, done: make(chan time.Time, 1)}
	o.mu.Lock()
	o.waiters[w] = true
	o.mu.Unlock()
	return w
}

func (w *waiter[T]) cancel() {
	w.o.mu.Lock()
	delete(w.o.waiters, w)
	w.o.mu.Unlock()
}

// wait returns when the matching event arrived.
func (w *waiter[T]) wait(ctx context.Context, timeout time.Duration) (time.Time, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case at := <-w.done:
		return at, nil
	case <-timer.C:
		w.cancel()
		return time.Time{}, fmt.Errorf("not seen within %s", timeout)
	case <-ctx.Done():
		w.cancel()
		return time.Time{}, ctx.Err()
	}
}

// target is a figure the issue asks for; zero fields are not asked for.
type target struct {
	p50, p99, max time.Duration
	text          string
}

// met says whether s meets t: "met", "missed" or "" when t asks nothing.
func (t target) met(s summary) string {
	if t.text == "" {
		return ""
	}
	ok := (t.p50 == 0 || s.p50 <= t.p50) && (t.p99 == 0 || s.p99 <= t.p99) && (t.max == 0 || s.max <= t.max)
	if ok {
		return "met"
	}
	return "missed"
}

type summary struct{ p50, p90, p99, max, mean time.Duration }

func summarize(samples []time.Duration) summary {
	if len(samples) == 0 {
		return summary{}
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	var total time.Duration
	for _, d := range sorted {
		total += d
	}
	// Nearest rank: the smallest sample with at least p% of them at or below.
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
		return sorted[max(i, 0)]
	}
	return summary{p50: rank(50), p90: rank(90), p99: rank(99), max: sorted[len(sorted)-1], mean: total / time.Duration(len(sorted))}
}

// results are every figure of a run, as printed and as written to -json.
type results struct {
	Started time.Time `json:"started"`
	Figures []figure  `json:"figures"`
	// CPU is alumiini's CPU time over the measured part of each phase.
	CPU             []phaseCPU `json:"alumiiniCPU,omitempty"`
	FanoutTriggered int        `json:"fanoutTriggered,omitempty"`
}

type figure struct {
	Phase     string    `json:"phase"`
	Name      string    `json:"name"`
	Count     int       `json:"count"`
	P50MS     float64   `json:"p50MS"`
	P90MS     float64   `json:"p90MS"`
	P99MS     float64   `json:"p99MS"`
	MaxMS     float64   `json:"maxMS"`
	MeanMS    float64   `json:"meanMS"`
	Target    string    `json:"target,omitempty"`
	Verdict   string    `json:"verdict,omitempty"`
	Reference string    `json:"reference,omitempty"`
	SamplesMS []float64 `json:"samplesMS"`
}

type phaseCPU struct {
	Phase   string  `json:"phase"`
	Seconds float64 `json:"seconds"`
	Rounds  int     `json:"rounds"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)) / 1000 }

// add records a figure and prints it at once.
func (r *results) add(phase, name string, samples []time.Duration, t target, reference string) {
	s := summarize(samples)
	f := figure{Phase: phase, Name: name, Count: len(samples),
		P50MS: ms(s.p50), P90MS: ms(s.p90), P99MS: ms(s.p99), MaxMS: ms(s.max), MeanMS: ms(s.mean),
		Target: t.text, Verdict: t.met(s), Reference: reference}
	for _, d := range samples {
		f.SamplesMS = append(f.SamplesMS, ms(d))
	}
	r.Figures = append(r.Figures, f)
	line := fmt.Sprintf("%s: %s: n=%d p50 %s p90 %s p99 %s max %s mean %s", phase, name, f.Count,
		formatMS(f.P50MS), formatMS(f.P90MS), formatMS(f.P99MS), formatMS(f.MaxMS), formatMS(f.MeanMS))
	if f.Count == 1 {
		line = fmt.Sprintf("%s: %s: %s", phase, name, formatMS(f.MaxMS))
	}
	if f.Target != "" {
		line += fmt.Sprintf("  [target %s: %s]", f.Target, f.Verdict)
	}
	if reference != "" {
		line += "  (" + reference + ")"
	}
	fmt.Println(line)
}

func (r *results) cpu(phase string, seconds float64, rounds int) {
	if seconds < 0 {
		return
	}
	r.CPU = append(r.CPU, phaseCPU{Phase: phase, Seconds: math.Round(seconds*100) / 100, Rounds: rounds})
	fmt.Printf("%s: alumiini CPU %.2fs over %s (%.0fms per round)\n", phase, seconds, roundsText(rounds), seconds*1000/float64(rounds))
}

func roundsText(n int) string {
	if n == 1 {
		return "1 round"
	}
	return strconv.Itoa(n) + " rounds"
}

func formatMS(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.2fs", v/1000)
	}
	return fmt.Sprintf("%.0fms", v)
}

// print writes the final table.
func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\n%-58s %4s %8s %8s %8s %8s %8s  %s\n", "figure", "n", "p50", "p90", "p99", "max", "mean", "target")
	for _, f := range r.Figures {
		t := ""
		if f.Target != "" {
			t = f.Target + ": " + f.Verdict
		}
		if f.Reference != "" {
			t = strings.TrimPrefix(t+"; "+f.Reference, "; ")
		}
		line := fmt.Sprintf("%-58s %4d %8s %8s %8s %8s %8s  %s", f.Name, f.Count,
			formatMS(f.P50MS), formatMS(f.P90MS), formatMS(f.P99MS), formatMS(f.MaxMS), formatMS(f.MeanMS), t)
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	if r.FanoutTriggered > 0 {
		fmt.Fprintf(w, "fan-out webhook answer: %d GitRepositories triggered\n", r.FanoutTriggered)
	}
	for _, c := range r.CPU {
		fmt.Fprintf(w, "alumiini CPU, %-6s %7.2fs over %s\n", c.Phase, c.Seconds, roundsText(c.Rounds))
	}
}
