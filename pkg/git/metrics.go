package git

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/falsesystems/alumiini/pkg/metrics"
)

// Kinds of transfer, as the metrics label them.
const (
	transferListing = "listing"
	transferFetch   = "fetch"
)

var (
	transfersTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "alumiini_git_transfers_total",
		Help: "Ref listings and fetches, by kind (listing, fetch) and result (ok, error).",
	}, []string{"kind", "result"})
	transferDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "alumiini_git_transfer_duration_seconds",
		Help:    "How long ref listings and fetches took, by kind.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	}, []string{"kind"})
	transferBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "alumiini_git_transfer_bytes_total",
		Help: "Bytes git servers sent, by kind of transfer.",
	}, []string{"kind"})
	fetchSlotWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "alumiini_git_fetch_slot_wait_seconds",
		Help:    "How long fetches waited for a fetch slot (--max-concurrent-fetches, per namespace too).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	})
	listingSlotWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "alumiini_git_listing_slot_wait_seconds",
		Help:    "How long ref listings waited for a listing slot (--max-concurrent-listings, per namespace too).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	})
	largeRefListWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "alumiini_git_large_ref_list_wait_seconds",
		Help:    "How long listings and fetches waited for a turn to read a ref list over 1 MiB (two are read at once).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	})
	cacheEvictions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "alumiini_git_cache_evictions_total",
		Help: "Git cache stores evicted to stay within --git-cache-max-bytes.",
	})
)

// RegisterMetrics registers the git metrics, and the size of c, with r;
// registering twice is not an error.
func RegisterMetrics(r prometheus.Registerer, c *Cache) error {
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "alumiini_git_cache_bytes",
		Help: "Bytes the git cache holds on disk.",
	}, func() float64 { return float64(c.Size()) })
	return metrics.Register(r, transfersTotal, transferDuration, transferBytes, fetchSlotWait, listingSlotWait, largeRefListWait, cacheEvictions, size)
}
