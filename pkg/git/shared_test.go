package git

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestSharedWorkOutlivesAnImpatientCaller: a caller with a short timeout
// gives up alone; one with a long timeout still gets the result of the same
// work, and once nobody waits the work is cancelled.
func TestSharedWorkOutlivesAnImpatientCaller(t *testing.T) {
	var s sharedWork
	release := make(chan struct{})
	cancelled := make(chan struct{})
	work := func(ctx context.Context) (any, error) {
		select {
		case <-release:
			return "result", nil
		case <-ctx.Done():
			close(cancelled)
			return nil, ctx.Err()
		}
	}

	patient := make(chan any)
	go func() {
		v, _ := s.do(context.Background(), "k", work)
		patient <- v
	}()
	time.Sleep(50 * time.Millisecond) // the patient caller started the work
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.do(short, "k", work); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the impatient caller: %v, want its own deadline", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("the impatient caller waited %s for work another caller started", waited)
	}
	close(release)
	if v := <-patient; v != "result" {
		t.Fatalf("the patient caller got %v: the impatient one cancelled the shared work", v)
	}

	// Work that every caller gave up on is cancelled.
	gone, cancelGone := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelGone()
	_, _ = s.do(gone, "k2", func(ctx context.Context) (any, error) {
		<-ctx.Done()
		close(cancelled)
		return nil, ctx.Err()
	})
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("work nobody waits for kept running")
	}
}

// A caller coming after every caller of a piece of work gave up starts the
// work afresh, rather than joining the cancelled one (which ended the next
// sync "context canceled" while the cancelled work wound down).
func TestACallerAfterAllGaveUpStartsAfresh(t *testing.T) {
	var s sharedWork
	winding := make(chan struct{})
	defer close(winding)
	started := 0
	work := func(ctx context.Context) (any, error) {
		started++
		if started == 1 {
			<-ctx.Done()
			<-winding // the cancelled work has not returned yet
			return nil, ctx.Err()
		}
		return "result", nil
	}
	gone, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := s.do(gone, "k", work); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the caller that gave up: %v", err)
	}
	next, cancelNext := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelNext()
	if v, err := s.do(next, "k", work); err != nil || v != "result" {
		t.Fatalf("the next caller: %v, %v; want the result of work of its own", v, err)
	}
}

// Work that panics (go-git on a hostile server's data, say) fails its callers
// with an error; the process, and later work under the same key, go on.
func TestPanickingWorkFailsItsCallersOnly(t *testing.T) {
	var s sharedWork
	_, err := s.do(context.Background(), "k", func(context.Context) (any, error) {
		var refs []string
		return refs[3], nil
	})
	if err == nil || !strings.Contains(err.Error(), "internal error in git work") {
		t.Fatalf("work that panicked: %v, want an internal error", err)
	}
	if v, err := s.do(context.Background(), "k", func(context.Context) (any, error) { return "result", nil }); err != nil || v != "result" {
		t.Fatalf("the next work: %v, %v", v, err)
	}
}
