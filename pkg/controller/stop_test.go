package controller

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
)

func TestAStopEndsSyncsThatHaveNotBegunWriting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := newStopGate()
		ctx, guard := gate.guard(context.Background())
		defer guard.end()
		if !gate.finish(context.Background()) {
			t.Error("finish reported syncs left writing; none was")
		}
		synctest.Wait()
		if ctx.Err() == nil {
			t.Fatal("the stop did not end a sync that had not begun writing")
		}
		if err := guard.beginWrites(); !errors.Is(err, errStopping) {
			t.Errorf("beginWrites after the stop: %v, want errStopping", err)
		}
		if !gate.begun() || !guard.endedByStop() {
			t.Errorf("after the stop: begun %v, the sync ended by it %v", gate.begun(), guard.endedByStop())
		}
	})
}

func TestAStopWaitsForSyncsWritingAndOnlyForThem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := newStopGate()
		writingCtx, writer := gate.guard(context.Background())
		idleCtx, idle := gate.guard(context.Background())
		defer idle.end()
		if err := writer.beginWrites(); err != nil {
			t.Fatal(err)
		}
		if err := writer.beginWrites(); err != nil { // the deferred stage of a commit with CRDs
			t.Fatal(err)
		}
		finished := make(chan bool)
		go func() { finished <- gate.finish(context.Background()) }()
		synctest.Wait()
		if idleCtx.Err() == nil {
			t.Error("the stop did not end the sync that was not writing")
		}
		if writingCtx.Err() != nil {
			t.Error("the stop ended a sync that was writing")
		}
		select {
		case <-finished:
			t.Fatal("finish returned while a sync was writing")
		default:
		}
		writer.end()
		if !<-finished {
			t.Error("finish reported syncs left writing after the last one ended")
		}
		if writer.endedByStop() {
			t.Error("a sync that wrote counts as ended by the stop")
		}
	})
}

func TestAStopGivesUpOnWritesAtItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := newStopGate()
		ctx, writer := gate.guard(context.Background())
		defer writer.end()
		if err := writer.beginWrites(); err != nil {
			t.Fatal(err)
		}
		deadline, cancel := context.WithCancel(context.Background())
		cancel()
		if gate.finish(deadline) {
			t.Error("finish at its deadline reported no sync left writing")
		}
		if ctx.Err() != nil {
			t.Error("the stop's deadline ended the writing sync; the controller's context does, once the hook returns")
		}
	})
}

// A lost Lease ends the worker's context, the Lease's term: a sync writing
// while the stop waits ends with it, and the stop waits no longer.
func TestALostLeaseEndsWritesTheStopWaitsFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := newStopGate()
		term, loseLease := context.WithCancel(context.Background())
		ctx, writer := gate.guard(term)
		if err := writer.beginWrites(); err != nil {
			t.Fatal(err)
		}
		finished := make(chan bool)
		go func() { finished <- gate.finish(context.Background()) }()
		synctest.Wait()
		loseLease()
		<-ctx.Done() // the apply's requests fail; the sync returns
		writer.end()
		if !<-finished {
			t.Error("finish reported syncs left writing")
		}
	})
}

func TestARefusedSyncIsNotWaitedFor(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := newStopGate()
		_, refused := gate.guard(context.Background())
		gate.begin()
		if err := refused.beginWrites(); !errors.Is(err, errStopping) {
			t.Fatalf("beginWrites after the stop began: %v", err)
		}
		refused.end()
		if !gate.finish(context.Background()) {
			t.Error("finish waits for a sync that was refused its writes")
		}
	})
}

func TestANilGateNeverStops(t *testing.T) {
	var gate *stopGate
	ctx, guard := gate.guard(context.Background())
	if err := guard.beginWrites(); err != nil || gate.begun() || !gate.finish(context.Background()) || guard.endedByStop() {
		t.Errorf("a nil gate: beginWrites %v, begun %v", err, gate.begun())
	}
	guard.end()
	if ctx.Err() != nil {
		t.Error("a nil gate ended the sync")
	}
}
