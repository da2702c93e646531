package webhook

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/falsesystems/alumiini/pkg/metrics"
)

// The values of the result label of alumiini_webhook_requests_total.
const (
	resultTriggered      = "triggered"
	resultNoMatch        = "no_match"
	resultSkipped        = "skipped"
	resultUnauthorized   = "unauthorized"
	resultMalformed      = "malformed"
	resultIgnoredEvent   = "ignored_event"
	resultPing           = "ping"
	resultTooLarge       = "too_large"
	resultBadMethod      = "bad_method"
	resultBadContentType = "bad_content_type"
	resultRateLimited    = "rate_limited"
	resultNotFound       = "not_found"
	resultError          = "error"
)

// unknownProvider labels requests to a path that names no provider, so a
// scanner trying paths cannot grow the label set.
const unknownProvider = "unknown"

// The collectors are package-level so that every handler counts into the
// same series whichever registry they are registered with.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "alumiini_webhook_requests_total",
		Help: "Push webhook requests received, by provider and result.",
	}, []string{"provider", "result"})

	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "alumiini_webhook_request_duration_seconds",
		Help:    "Time taken to answer a push webhook request, by provider.",
		Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	}, []string{"provider"})
)

// RegisterMetrics registers the webhook receiver's metrics with r. Registering
// them again with the same registry is not an error.
func RegisterMetrics(r prometheus.Registerer) error {
	if err := metrics.Register(r, requestsTotal, requestDuration); err != nil {
		return fmt.Errorf("registering webhook metrics: %w", err)
	}
	return nil
}
