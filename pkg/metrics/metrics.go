// Package metrics holds what alumiini's packages share about registering
// their prometheus/client_golang collectors.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers collectors with r. A collector registered already is
// not an error: the server and tests may register a package's metrics more
// than once.
func Register(r prometheus.Registerer, collectors ...prometheus.Collector) error {
	for _, c := range collectors {
		if err := r.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}
