package controller

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// The controller's own metrics, served on the server's /metrics.
var (
	driftDetected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "alumiini_drift_detected_total",
		Help: "Applied objects found to differ from git because someone else changed or deleted them.",
	})
	driftCorrected = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "alumiini_drift_corrected_total",
		Help: "Drifted objects whose git state alumiini re-applied.",
	})
)

// RegisterMetrics registers the controller's metrics with r; registering
// twice is not an error.
func RegisterMetrics(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{driftDetected, driftCorrected} {
		if err := r.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}
