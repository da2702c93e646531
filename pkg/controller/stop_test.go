package controller

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestAStopEndsSyncsThatHaveNotBegunWriting(t *testing.T) {
	gate := newStopGate()
	ctx, guard := gate.guard(context.Background())
	defer guard.end()
	if writing := gate.finish(context.Background()); writing != 0 {
		t.Errorf("finish reported %d syncs writing, want 0", writing)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the stop did not end a sync that had not begun writing")
	}
	if err := guard.beginWrites(); !errors.Is(err, errStopping) {
		t.Errorf("beginWrites after the stop: %v, want errStopping", err)
	}
	if !gate.begun() {
		t.Error("the gate does not say the stop began")
	}
}

func TestAStopWaitsForSyncsWritingAndOnlyForThem(t *testing.T) {
	gate := newStopGate()
	writingCtx, writer := gate.guard(context.Background())
	idleCtx, idle := gate.guard(context.Background())
	defer idle.end()
	if err := writer.beginWrites(); err != nil {
		t.Fatal(err)
	}
	finished := make(chan int)
	go func() { finished <- gate.finish(context.Background()) }()
	select {
	case <-idleCtx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the stop did not end the sync that was not writing")
	}
	select {
	case n := <-finished:
		t.Fatalf("finish returned (%d writing) while a sync was writing", n)
	case <-time.After(200 * time.Millisecond):
	}
	if writingCtx.Err() != nil {
		t.Fatal("the stop ended a sync that was writing")
	}
	writer.end()
	select {
	case n := <-finished:
		if n != 0 {
			t.Errorf("finish reported %d writing after the last one ended", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("finish did not return once the writing sync ended")
	}
}

func TestAStopGivesUpOnWritesAtItsDeadlineAndALostLeaseEndsThem(t *testing.T) {
	gate := newStopGate()
	term, loseLease := context.WithCancel(context.Background())
	ctx, writer := gate.guard(term)
	defer writer.end()
	if err := writer.beginWrites(); err != nil {
		t.Fatal(err)
	}
	deadline, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if writing := gate.finish(deadline); writing != 1 {
		t.Errorf("finish at its deadline reported %d writing, want 1", writing)
	}
	if ctx.Err() != nil {
		t.Fatal("the stop's deadline itself ended the writing sync; the caller's context does")
	}
	loseLease()
	if ctx.Err() == nil {
		t.Error("a lost Lease did not end a sync that was writing")
	}
}

func TestANilGateNeverStops(t *testing.T) {
	var gate *stopGate
	ctx, guard := gate.guard(context.Background())
	if err := guard.beginWrites(); err != nil || gate.begun() || gate.finish(context.Background()) != 0 {
		t.Errorf("a nil gate: beginWrites %v, begun %v", err, gate.begun())
	}
	guard.end()
	if ctx.Err() != nil {
		t.Error("a nil gate ended the sync")
	}
}
