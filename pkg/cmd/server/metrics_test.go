package server

import (
	"net/http"
	"net/http/httptest"
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

// TestAFloodOfScrapesWaitsItsTurn: at most two scrapes are served at once
// (encoding them is what a flood costs), and the others wait rather than
// being refused.
func TestAFloodOfScrapesWaitsItsTurn(t *testing.T) {
	var now, most atomic.Int32
	h := limitConcurrent(maxScrapes, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		defer now.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(5 * time.Millisecond)
	}))
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			if rec.Code != http.StatusOK {
				t.Errorf("a scrape got %d", rec.Code)
			}
		}()
	}
	wg.Wait()
	if m := most.Load(); m > maxScrapes {
		t.Errorf("%d scrapes ran at once, want at most %d", m, maxScrapes)
	}
}
