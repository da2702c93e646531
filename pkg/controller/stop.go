package controller

import (
	"context"
	"errors"

	"k8s.io/apimachinery/pkg/util/waitgroup"
)

// errStopping refuses the writes of a sync that reached them after the
// process began to stop.
var errStopping = errors.New("not writing: this alumiini process is stopping; the next one syncs again")

// stopGate lets a stop end every sync at once except those already
// writing, which it waits for. A sync cut between two of its writes would
// leave its commit applied in part until the next process (or leader)
// synced it again; one that has written nothing loses nothing by ending.
// Only the stop is waited for: a lost Lease still ends every sync at once,
// since each sync's context is a child of its worker's, which ends with the
// Lease's term (Controller.lead).
//
// A nil *stopGate never stops: Reconcilers that tests build by hand.
type stopGate struct {
	stopped context.Context // done once the stop began
	begin   context.CancelFunc
	writers waitgroup.SafeWaitGroup // refuses new writers once finish waits
}

func newStopGate() *stopGate {
	stopped, begin := context.WithCancel(context.Background())
	return &stopGate{stopped: stopped, begin: begin}
}

// begun reports whether the stop began. It never ends.
func (g *stopGate) begun() bool { return g != nil && g.stopped.Err() != nil }

// guard returns the context of one sync: a child of ctx that the stop also
// ends, until the sync begins writing. The sync calls end when it is done.
func (g *stopGate) guard(ctx context.Context) (context.Context, *syncStop) {
	if g == nil {
		return ctx, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	return ctx, &syncStop{gate: g, cancel: cancel, detach: context.AfterFunc(g.stopped, cancel)}
}

// orStop returns a child of ctx that the stop ends too, for a wait a
// stopping process need not finish.
func (g *stopGate) orStop(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if g == nil {
		return ctx, cancel
	}
	detach := context.AfterFunc(g.stopped, cancel)
	return ctx, func() { detach(); cancel() }
}

// finish begins the stop, ending every sync not writing, and waits until
// none is writing or ctx ends; it reports whether none was left writing.
func (g *stopGate) finish(ctx context.Context) bool {
	if g == nil {
		return true
	}
	g.begin()
	idle := make(chan struct{})
	go func() { // left waiting if ctx ends first: the process is ending
		defer close(idle)
		g.writers.Wait()
	}()
	select {
	case <-idle:
		return true
	case <-ctx.Done():
		return false
	}
}

// syncStop is how the stop treats one sync: it cancels the sync until
// beginWrites, and waits for it after.
type syncStop struct {
	gate    *stopGate
	cancel  context.CancelFunc
	detach  func() bool // false once the stop has cancelled the sync
	writing bool
}

// beginWrites is called once the dry-runs passed, before the first write.
// If the stop has begun, it ends the sync and returns errStopping;
// otherwise the stop no longer cancels the sync and waits for it instead.
func (s *syncStop) beginWrites() error {
	if s == nil || s.writing {
		return nil
	}
	// detach fails once the stop began; Add, once finish waits (a sync
	// detached just before the stop began can still be refused here).
	if !s.detach() || s.gate.writers.Add(1) != nil {
		s.cancel() // now, so that nothing of the refused sync goes out
		return errStopping
	}
	s.writing = true
	return nil
}

// endedByStop reports whether the stop ended the sync before it wrote.
func (s *syncStop) endedByStop() bool {
	return s != nil && !s.writing && s.gate.begun()
}

// end ends the sync's context and, if it was writing, tells the stop.
func (s *syncStop) end() {
	if s == nil {
		return
	}
	s.detach()
	s.cancel()
	if s.writing {
		s.gate.writers.Done()
	}
}
