package controller

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/cache"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/metrics"
)

// Results of a sync, as the metrics label them.
const (
	resultSynced = "synced" // a commit (or a spec change) applied
	resultDrift  = "drift"  // only objects the drift watch suspected compared
	resultIdle   = "idle"   // nothing new: one ref listing at most
	resultFailed = "failed"
)

// The controller's own metrics, served on the server's /metrics. Labels are
// bounded: results, reasons and actions are fixed sets; GitRepositories are
// named only by the per-GitRepository gauges, deleted with them and when
// another replica takes them over.
var (
	syncsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "alumiini_syncs_total",
		Help: "Syncs by result (synced, drift, idle, failed) and reason (the Ready condition's reason).",
	}, []string{"result", "reason"})
	syncDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "alumiini_sync_duration_seconds",
		Help:    "How long syncs took, by result.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
	}, []string{"result"})
	objectsApplied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "alumiini_objects_applied_total",
		Help: "Objects of applied commits by action: created, configured, unchanged, pruned.",
	}, []string{"action"})
	lastSync = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "alumiini_gitrepository_last_sync_timestamp_seconds",
		Help: "When each GitRepository last synced successfully (applied, corrected drift, or found nothing new), Unix time.",
	}, []string{"namespace", "name"})
	ready = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "alumiini_gitrepository_ready",
		Help: "1 while the GitRepository's Ready condition is True, else 0; none while it is suspended; served by the replica that syncs it.",
	}, []string{"namespace", "name"})
	workerRestarts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "alumiini_worker_restarts_total",
		Help: "Workers restarted after a panic.",
	})
	workerStalls = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "alumiini_worker_stalls_total",
		Help: "Workers marked Stalled after crashing too often.",
	})
	slotWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "alumiini_slot_wait_seconds",
		Help:    "How long syncs waited for a shared slot, by slot (apply).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"slot"})
	driftDetected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "alumiini_drift_detected_total",
		Help: "Applied objects found to differ from git because someone else changed or deleted them.",
	})
	driftCorrected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "alumiini_drift_corrected_total",
		Help: "Drifted objects whose git state alumiini re-applied.",
	})
	ownershipMoves = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "alumiini_ownership_moves_total",
		Help: "GitRepositories this replica claimed or released (--share-work), by move.",
	}, []string{"move"})
)

// RegisterMetrics registers the controller's metrics with r, with c's
// running workers; registering twice is not an error.
func RegisterMetrics(r prometheus.Registerer, c *Controller) error {
	workers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "alumiini_workers",
		Help: "Workers running, one per GitRepository this replica syncs (with --share-work, the ones it owns).",
	}, func() float64 { return float64(c.workers()) })
	leading := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "alumiini_controller_leading",
		Help: "1 while this replica runs the workers (with --leader-elect, while it holds the Lease), else 0.",
	}, func() float64 {
		if c.workersRunning() {
			return 1
		}
		return 0
	})
	return metrics.Register(r, syncsTotal, syncDuration, objectsApplied, lastSync, ready, workerRestarts,
		workerStalls, slotWait, driftDetected, driftCorrected, ownershipMoves, workers, leading)
}

// perRepository keeps the per-GitRepository series to the GitRepositories
// that have a worker here: a status write landing after the last worker of
// one returned (a health or Rollout wait, a stall report, a sync cut short
// by a hand-over) cannot bring its series back, so a deleted or handed-over
// GitRepository leaves none behind on /metrics.
type perRepository struct {
	mu sync.Mutex
	// workers counts each key's workers that have not returned yet: an old
	// one may still be returning while a new one runs (a GitRepository
	// deleted and created again, or claimed back).
	workers map[string]int
}

var series = &perRepository{workers: map[string]int{}}

// workerStarted: key has one more worker here (the supervisor's OnStart).
func (p *perRepository) workerStarted(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.workers[key]++
}

// workerExited: one of key's workers returned for good (OnExit); with the
// last, its series go.
func (p *perRepository) workerExited(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.workers[key] > 1 {
		p.workers[key]--
		return
	}
	delete(p.workers, key)
	p.dropLocked(key)
}

// drop deletes key's series now (the GitRepository was deleted).
func (p *perRepository) drop(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropLocked(key)
}

func (p *perRepository) dropLocked(key string) {
	if namespace, name, err := cache.SplitMetaNamespaceKey(key); err == nil {
		lastSync.DeleteLabelValues(namespace, name)
		ready.DeleteLabelValues(namespace, name)
	}
}

// showReady sets repo's ready gauge from its Ready condition, so an alert on
// it sees every reason Ready is False (a failure, a health timeout, drift
// left in Detect mode, a crash loop), not only failed syncs. A suspended
// GitRepository is not Ready on purpose: it has no series, so no alert.
func (p *perRepository) showReady(repo *v1alpha1.GitRepository) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.workers[repo.Namespace+"/"+repo.Name] == 0 {
		return
	}
	if repo.Spec.Suspend {
		ready.DeleteLabelValues(repo.Namespace, repo.Name)
		return
	}
	value := 0.0
	if meta.IsStatusConditionTrue(repo.Status.Conditions, v1alpha1.ConditionReady) {
		value = 1
	}
	ready.WithLabelValues(repo.Namespace, repo.Name).Set(value)
}

// synced records a successful sync of repo now.
func (p *perRepository) synced(repo *v1alpha1.GitRepository) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.workers[repo.Namespace+"/"+repo.Name] > 0 {
		lastSync.WithLabelValues(repo.Namespace, repo.Name).SetToCurrentTime()
	}
}
