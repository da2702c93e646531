package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// result is one run's figures, comparable across runs as JSON.
type result struct {
	N int `json:"n"`
	// AlumiiniEnv: what -alumiini-env added to alumiini's environment.
	AlumiiniEnv []string `json:"alumiiniEnv,omitempty"`
	// AlumiiniArgs: what -alumiini-args added to alumiini's flags.
	AlumiiniArgs   []string  `json:"alumiiniArgs,omitempty"`
	GitURLs        int       `json:"gitURLs"`
	Objects        int       `json:"objects"`
	Started        time.Time `json:"started"`
	Kubectl        phase     `json:"kubectl"`
	Alumiini       phase     `json:"alumiini"`
	RatioToKubectl float64   `json:"ratioToKubectl"`
	// KubectlDryRunSeconds: the same kubectl processes with
	// --dry-run=server first, what dry-running every object costs;
	// RatioToKubectlDryRunAndApply compares alumiini with both.
	KubectlDryRunSeconds         float64 `json:"kubectlDryRunSeconds"`
	RatioToKubectlDryRunAndApply float64 `json:"ratioToKubectlDryRunAndApply"`
	// KubectlDryRunCPUSeconds: each process's CPU over those dry-runs,
	// kube-apiserver's being the price of the guarantee.
	KubectlDryRunCPUSeconds map[string]float64 `json:"kubectlDryRunCPUSeconds"`
	// Cores is what the machine has: a phase's CPU-seconds of all
	// processes over Cores is the least time it could take.
	Cores int `json:"cores"`
	// ControllerManagerQPS: kube-controller-manager's --kube-api-qps, when
	// -kcm-qps set it (0: its default, 20).
	ControllerManagerQPS int `json:"controllerManagerQPS,omitempty"`
	// QuietWaitSeconds: how long the bench waited before each phase for
	// kube-apiserver's writes (kube-controller-manager's reaction to the
	// phase before) to stop.
	QuietWaitSeconds map[string]float64 `json:"quietWaitSeconds"`
	Memory           memory             `json:"memory"`
	Idle             idle               `json:"idle"`
	Push             push               `json:"push"`
}

// phase is one way of applying the 4N objects.
type phase struct {
	Seconds float64 `json:"seconds"`
	// CPUSeconds of alumiini, kube-apiserver and etcd over the phase.
	CPUSeconds map[string]float64 `json:"cpuSeconds"`
	// GCCPUSeconds: the part of alumiini's that was its garbage collector.
	GCCPUSeconds float64 `json:"gcCPUSeconds,omitempty"`
	// RequestsPerGitRepository: alumiini's requests to kube-apiserver by
	// method, from its client; dry-runs and applies as kube-apiserver
	// counted them (all clients, hence KCM's too, under other verbs).
	RequestsPerGitRepository map[string]float64 `json:"requestsPerGitRepository,omitempty"`
	KubeAPIServerVerbs       map[string]float64 `json:"kubeAPIServerVerbs,omitempty"`
	// KubeAPIServerWrites: kube-apiserver's writes over the phase by verb
	// and resource, all clients (the applier's and kube-controller-manager's).
	KubeAPIServerWrites map[string]float64 `json:"kubeAPIServerWrites,omitempty"`
	// OwnAPIPerGitRepository: requests alumiini's API served (the bench's
	// creates and watch, alumiini's status writes), by verb.
	OwnAPIPerGitRepository map[string]float64 `json:"ownAPIPerGitRepository,omitempty"`
	// LastCreateSeconds: when the bench's last create was answered, from
	// the phase's start; CreateToReady: for each GitRepository, from its
	// create's answer to its first Ready the bench's watch saw. Together
	// they tell creating from syncing, and a slow tail from a slow middle.
	LastCreateSeconds float64 `json:"lastCreateSeconds,omitempty"`
	CreateToReady     *spread `json:"createToReadySeconds,omitempty"`
}

// spread is a distribution of durations, in seconds.
type spread struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	Max float64 `json:"max"`
}

// spreadOf ranks as test/bench/latency does (nearest rank: the smallest
// sample with at least p% of them at or below it).
func spreadOf(durations []time.Duration) *spread {
	if len(durations) == 0 {
		return nil
	}
	sorted := slices.Sorted(slices.Values(durations))
	rank := func(p float64) float64 {
		return sorted[max(int(math.Ceil(p/100*float64(len(sorted))))-1, 0)].Seconds()
	}
	return &spread{P50: rank(50), P90: rank(90), Max: sorted[len(sorted)-1].Seconds()}
}

type memory struct {
	EmptyRSS   int64 `json:"emptyRSS"`
	EmptyHeap  int64 `json:"emptyHeap"`
	SettledRSS int64 `json:"settledRSS"`
	// The part of each that maps files (the binary's code, etcd's database).
	EmptyRSSFile   int64   `json:"emptyRSSFile"`
	SettledRSSFile int64   `json:"settledRSSFile"`
	SettledHeap    int64   `json:"settledHeap"`
	RSSPerRepo     float64 `json:"rssPerGitRepository"`
	// AnonRSSPerRepo leaves out the mapped files: the binary's code, the
	// same for any N, and etcd's database, which grows with N but is page
	// cache the kernel may drop.
	AnonRSSPerRepo float64 `json:"anonRSSPerGitRepository"`
	HeapPerRepo    float64 `json:"heapPerGitRepository"`
	// Most of the anonymous part, from the Go runtime after a collection
	// (only printed settled; the empty figures are in the JSON): the heap
	// pages it retains (live objects, free space in their spans, free pages
	// not given back to the kernel yet) and goroutine stacks. The settled
	// figures come 10 s after the bench's wait for quiet, the empty ones
	// after a minute idle: Go returns free pages gradually.
	EmptyHeapRetained   int64   `json:"emptyHeapRetained"`
	SettledHeapRetained int64   `json:"settledHeapRetained"`
	HeapRetainedPerRepo float64 `json:"heapRetainedPerGitRepository"`
	EmptyStacks         int64   `json:"emptyStacks"`
	SettledStacks       int64   `json:"settledStacks"`
	StacksPerRepo       float64 `json:"stacksPerGitRepository"`
	// The same process at the end of the idle interval: by then Go has had
	// the whole interval, not 10 s, to return the sync's burst to the kernel.
	IdleRSS            int64   `json:"idleRSS"`
	IdleRSSFile        int64   `json:"idleRSSFile"`
	IdleAnonRSSPerRepo float64 `json:"idleAnonRSSPerGitRepository"`
}

type idle struct {
	Seconds      float64 `json:"seconds"`
	CPUSeconds   float64 `json:"cpuSeconds"`
	GCCPUSeconds float64 `json:"gcCPUSeconds"`
	// Requests: alumiini's to kube-apiserver by method; OwnAPIWrites: to
	// its own API (status writes), by verb.
	Requests     map[string]float64 `json:"requests"`
	OwnAPIWrites map[string]float64 `json:"ownAPIWrites"`
	// OwnAPIRequests: every request its own API served, from any client,
	// by verb: a LIST is a relist (of the controller's informer or
	// kube-controller-manager's); a WATCH counts when it ends.
	OwnAPIRequests map[string]float64 `json:"ownAPIRequests"`
	RefListings    int                `json:"refListings"`
	Fetches        int                `json:"fetches"`
	// EmptyCPUSecondsPerMinute: the process with no GitRepository, idle.
	EmptyCPUSecondsPerMinute float64 `json:"emptyCPUSecondsPerMinute"`
}

type push struct {
	GitRepositories int     `json:"gitRepositories"`
	Seconds         float64 `json:"seconds"`
}

func (r *result) print(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("N=%d GitRepositories over %d git URLs, %d objects%s", r.N, r.GitURLs, r.Objects, envNote(r.AlumiiniEnv, r.AlumiiniArgs))
	p("  %-34s %10s %10s", "", "kubectl", "alumiini")
	p("  %-34s %9.2fs %9.2fs   alumiini ÷ kubectl %.2f", "create → all applied/Ready", r.Kubectl.Seconds, r.Alumiini.Seconds, r.RatioToKubectl)
	if c := r.Alumiini.CreateToReady; c != nil {
		p("  %-34s %10s %9.2fs", "  of it, until the last create's answer", "—", r.Alumiini.LastCreateSeconds)
		p("  %-34s %10s %10s   p50 %.2fs, p90 %.2fs, max %.2fs", "  each create's answer → its Ready", "—", "", c.P50, c.P90, c.Max)
	}
	p("  %-34s %9.2fs %10s   alumiini ÷ (dry-run + apply) %.2f", "kubectl --dry-run=server alone", r.KubectlDryRunSeconds, "",
		r.RatioToKubectlDryRunAndApply)
	p("  %-34s %10.2f %10s", "CPU-s the 8 kubectl processes", r.Kubectl.CPUSeconds["kubectl"], "—")
	for _, name := range []string{"alumiini", "kube-apiserver", "etcd", "kube-controller-manager"} {
		p("  %-34s %10.2f %10.2f", "CPU-s "+name, r.Kubectl.CPUSeconds[name], r.Alumiini.CPUSeconds[name])
	}
	p("  %-34s %10s %10.2f", "  of alumiini's: garbage collector", "—", r.Alumiini.GCCPUSeconds)
	p("  %-34s %10.2f %10.2f", "CPU-s all of the above", total(r.Kubectl.CPUSeconds), total(r.Alumiini.CPUSeconds))
	p("  %-34s %9.2fs %9.2fs   (no phase can be faster)", fmt.Sprintf("all CPU-s ÷ %d cores", r.Cores),
		total(r.Kubectl.CPUSeconds)/float64(r.Cores), total(r.Alumiini.CPUSeconds)/float64(r.Cores))
	p("  %-34s %10.2f %10s   (kube-apiserver %.2f of it: the price of dry-running first)", "CPU-s of the kubectl dry-run phase",
		total(r.KubectlDryRunCPUSeconds), "—", r.KubectlDryRunCPUSeconds["kube-apiserver"])
	p("  %-34s %10s %10.1f", "kube-apiserver CPU-ms per GitRepository", "",
		1000*r.Alumiini.CPUSeconds["kube-apiserver"]/float64(r.N))
	p("  alumiini → kube-apiserver per GitRepository: %s", perVerb(r.Alumiini.RequestsPerGitRepository, "%.2f"))
	p("  kube-apiserver's requests in that time, all clients (KCM, the bench) together: %s",
		perVerb(r.Alumiini.KubeAPIServerVerbs, "%.0f"))
	p("  kube-apiserver's writes in each phase, all clients, the most first: kubectl %s; alumiini %s",
		topWrites(r.Kubectl.KubeAPIServerWrites, 6), topWrites(r.Alumiini.KubeAPIServerWrites, 6))
	p("  waited for kube-apiserver's writes to stop (kube-controller-manager, QPS %s): before kubectl %.0fs, before the empty process %.0fs, before the settled process %.0fs",
		qpsNote(r.ControllerManagerQPS), r.QuietWaitSeconds["kubectl"], r.QuietWaitSeconds["empty"], r.QuietWaitSeconds["settled"])
	p("  alumiini's own API per GitRepository (the bench's create, alumiini's status writes): %s",
		perVerb(r.Alumiini.OwnAPIPerGitRepository, "%.2f"))
	p("  memory: empty RSS %s (files %s) live heap %s; settled RSS %s (files %s) live heap %s; per GitRepository RSS %s (anonymous, without mapped files, %s) live heap %s",
		mib(r.Memory.EmptyRSS), mib(r.Memory.EmptyRSSFile), mib(r.Memory.EmptyHeap),
		mib(r.Memory.SettledRSS), mib(r.Memory.SettledRSSFile), mib(r.Memory.SettledHeap),
		kib(r.Memory.RSSPerRepo), kib(r.Memory.AnonRSSPerRepo), kib(r.Memory.HeapPerRepo))
	p("  Go runtime, settled: heap retained %s (live objects and free pages not yet returned; %s per GitRepository), goroutine stacks %s (%s per GitRepository)",
		mib(r.Memory.SettledHeapRetained), kib(r.Memory.HeapRetainedPerRepo), mib(r.Memory.SettledStacks), kib(r.Memory.StacksPerRepo))
	p("  memory after the idle interval: RSS %s (files %s), per GitRepository anonymous %s",
		mib(r.Memory.IdleRSS), mib(r.Memory.IdleRSSFile), kib(r.Memory.IdleAnonRSSPerRepo))
	p("  idle %.0fs: alumiini CPU %.2fs (garbage collector %.2fs; empty process: %.2fs per minute); requests %s; own API served writes %s, all requests %s (LIST: a relist; WATCH: watches that ended); ref listings %d (of %d URLs), fetches %d",
		r.Idle.Seconds, r.Idle.CPUSeconds, r.Idle.GCCPUSeconds, r.Idle.EmptyCPUSecondsPerMinute, perVerb(r.Idle.Requests, "%.0f"),
		perVerb(r.Idle.OwnAPIWrites, "%.0f"), perVerb(r.Idle.OwnAPIRequests, "%.0f"), r.Idle.RefListings, r.GitURLs, r.Idle.Fetches)
	p("  push to a shared repository → %d GitRepositories show it: %.3fs", r.Push.GitRepositories, r.Push.Seconds)
}

func perVerb(m map[string]float64, format string) string {
	if len(m) == 0 {
		return "none"
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+" "+fmt.Sprintf(format, m[k]))
	}
	return strings.Join(parts, ", ")
}

func envNote(env, args []string) string {
	if len(env)+len(args) == 0 {
		return ""
	}
	return "; alumiini run with " + strings.Join(append(append([]string{}, env...), args...), " ")
}

func total(cpu map[string]float64) float64 {
	var sum float64
	for _, seconds := range cpu {
		sum += seconds
	}
	return sum
}

func mib(b int64) string   { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

// topWrites lists the n commonest writes, "PATCH configmaps 4000".
func topWrites(m map[string]float64, n int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	if len(keys) > n {
		keys = keys[:n]
	}
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.0f", k, m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func qpsNote(qps int) string {
	if qps == 0 {
		return "20, its default"
	}
	return fmt.Sprint(qps)
}
