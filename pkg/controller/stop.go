package controller

import (
	"context"
	"errors"
	"sync"
)

// errStopping refuses the writes of a sync that reached them after the
// process began to stop.
var errStopping = errors.New("not writing: this alumiini process is stopping; the next one syncs again")

// stopGate lets a stop end every sync at once except those already
// writing, which it waits for. A sync cut between two of its writes would
// leave its commit applied in part until the next process (or leader)
// synced it again; one that has written nothing loses nothing by ending.
// Only the stop is waited for: a lost Lease still ends every sync at once,
// through the worker's context, since another replica may lead by then.
//
// A nil *stopGate never stops (Reconcilers built by tests).
type stopGate struct {
	stopped context.Context // done once the stop began
	begin   context.CancelFunc

	mu      sync.Mutex
	writing int           // syncs past beginWrites, not yet ended
	idle    chan struct{} // made by finish; closed once writing is 0
}

func newStopGate() *stopGate {
	stopped, begin := context.WithCancel(context.Background())
	return &stopGate{stopped: stopped, begin: begin}
}

// begun reports whether the stop began.
func (g *stopGate) begun() bool { return g != nil && g.stopped.Err() != nil }

// guard returns the context of one sync: ended by ctx, and by the stop
// until the sync begins writing. The sync calls end when it is done.
func (g *stopGate) guard(ctx context.Context) (context.Context, *syncGuard) {
	if g == nil {
		return ctx, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	return ctx, &syncGuard{gate: g, cancel: cancel, detach: context.AfterFunc(g.stopped, cancel)}
}

// finish begins the stop, ending every sync not writing, and waits until
// none is writing or ctx ends. It returns how many were still writing.
func (g *stopGate) finish(ctx context.Context) int {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	g.begin() // under the lock: no beginWrites succeeds after it
	if g.idle == nil {
		g.idle = make(chan struct{})
		if g.writing == 0 {
			close(g.idle)
		}
	}
	idle := g.idle
	g.mu.Unlock()
	select {
	case <-idle:
		return 0
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.writing
}

// syncGuard is one sync's part of the gate; nil when the gate is.
type syncGuard struct {
	gate    *stopGate
	cancel  context.CancelFunc
	detach  func() bool // keeps the stop from cancelling the sync
	writing bool
}

// beginWrites lets the sync write, from now on past a stop, unless the stop
// began: then it ends the sync and returns errStopping.
func (s *syncGuard) beginWrites() error {
	if s == nil {
		return nil
	}
	g := s.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.writing {
		return nil
	}
	if g.stopped.Err() != nil || !s.detach() {
		s.cancel() // now, so that no status write of the refused sync goes out
		return errStopping
	}
	g.writing++
	s.writing = true
	return nil
}

// end ends the sync's context and, if it was writing, tells the stop.
func (s *syncGuard) end() {
	if s == nil {
		return
	}
	s.detach()
	s.cancel()
	if !s.writing {
		return
	}
	g := s.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writing--
	if g.writing == 0 && g.idle != nil {
		close(g.idle)
	}
}
