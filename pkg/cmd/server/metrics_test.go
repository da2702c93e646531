package server

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

type countingGatherer struct{ gathers atomic.Int32 }

func (g *countingGatherer) Gather() ([]*dto.MetricFamily, error) {
	g.gathers.Add(1)
	return []*dto.MetricFamily{{}}, nil
}

// TestAFloodOfScrapesSharesOneGather: the unauthenticated listener's
// scrapes within a second share one gather, however many arrive, and each
// still gets the metrics.
func TestAFloodOfScrapesSharesOneGather(t *testing.T) {
	inner := &countingGatherer{}
	g := &sharedGather{gatherer: inner, every: time.Hour}
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if families, err := g.Gather(); err != nil || len(families) != 1 {
				t.Errorf("a scrape got %v, %v", families, err)
			}
		}()
	}
	wg.Wait()
	if n := inner.gathers.Load(); n != 1 {
		t.Errorf("100 scrapes gathered %d times, want once", n)
	}
}
