package apiserver

import (
	"testing"
	"time"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit"
	"k8s.io/klog/v2"
)

// blockingAudit is an audit backend whose Shutdown waits until released,
// as a webhook backend's does while its last batch is on its way.
type blockingAudit struct {
	audit.Backend
	stopped  <-chan struct{}
	shutdown chan struct{}
	release  chan struct{}
}

func (b *blockingAudit) Run(stop <-chan struct{}) error { b.stopped = stop; return nil }
func (b *blockingAudit) Shutdown()                      { close(b.shutdown); <-b.release }
func (b *blockingAudit) ProcessEvents(...*auditinternal.Event) bool {
	return true
}

// TestAStopThatGivesUpOnTheDrainStillStopsTheAuditBackend: the backend's
// Run is stopped by the drain or by the stop giving up on it, whichever
// comes first, and a flush waits for its Shutdown no longer than told.
func TestAStopThatGivesUpOnTheDrainStillStopsTheAuditBackend(t *testing.T) {
	inner := &blockingAudit{shutdown: make(chan struct{}), release: make(chan struct{})}
	wrapped := &drainBoundAudit{Backend: inner, givenUp: make(chan struct{})}
	drained := make(chan struct{}) // never closed: a client stopped reading
	if err := wrapped.Run(drained); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inner.stopped:
		t.Fatal("the backend stopped before the drain ended or the stop gave up")
	case <-time.After(50 * time.Millisecond):
	}
	start := time.Now()
	wrapped.flush(klog.Background(), 200*time.Millisecond)
	if took := time.Since(start); took < 200*time.Millisecond || took > 5*time.Second {
		t.Errorf("a flush whose Shutdown never returns took %s, want its 200ms", took)
	}
	select {
	case <-inner.stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("giving up on the drain did not stop the backend's Run")
	}
	select {
	case <-inner.shutdown:
	default:
		t.Error("the flush did not shut the backend down")
	}
	close(inner.release)
}
