package git

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"k8s.io/klog/v2"
)

// sharedWork runs one piece of work for every caller that asks for the same
// key while it runs (like singleflight), but under a context of its own: it
// is cancelled only when every caller has stopped waiting. So a caller with a
// short timeout cannot fail the others, a caller with a long one cannot hold
// them (each waits only as long as its own context allows), and work nobody
// waits for stops.
type sharedWork struct {
	mu    sync.Mutex
	calls map[string]*sharedCall
}

type sharedCall struct {
	done    chan struct{}
	val     any
	err     error
	waiters int
	cancel  context.CancelFunc
	// waitingFor is what the work waits for now, if anything (see
	// noteWait): a caller that gives up is told.
	waitingFor atomic.Pointer[string]
}

type sharedCallKey struct{}

// callerGaveUpError is the error of a caller whose context ended before
// the work did.
type callerGaveUpError struct {
	err error
	// waitingFor is what the work was waiting for then, or "".
	waitingFor string
}

func (g *callerGaveUpError) Error() string { return g.err.Error() }
func (g *callerGaveUpError) Unwrap() error { return g.err }

// noteWait notes that the shared work running under ctx waits for what (a
// slot, a turn) until doneWaiting is called, so that a caller who gives up
// meanwhile learns what held it. Outside shared work it does nothing.
func noteWait(ctx context.Context, what string) (doneWaiting func()) {
	call, _ := ctx.Value(sharedCallKey{}).(*sharedCall)
	if call == nil {
		return func() {}
	}
	call.waitingFor.Store(&what)
	return func() { call.waitingFor.Store(nil) }
}

// do runs work once for key and waits for it, or for ctx.
func (s *sharedWork) do(ctx context.Context, key string, work func(context.Context) (any, error)) (any, error) {
	s.mu.Lock()
	if s.calls == nil {
		s.calls = map[string]*sharedCall{}
	}
	call, ok := s.calls[key]
	if !ok {
		// Detached from this caller's cancellation but not its values.
		call = &sharedCall{done: make(chan struct{})}
		workCtx, cancel := context.WithCancel(context.WithValue(context.WithoutCancel(ctx), sharedCallKey{}, call))
		call.cancel = cancel
		s.calls[key] = call
		go s.run(key, call, workCtx, work)
	}
	call.waiters++
	s.mu.Unlock()

	select {
	case <-call.done:
		return call.val, call.err
	case <-ctx.Done():
		g := &callerGaveUpError{err: ctx.Err()}
		if what := call.waitingFor.Load(); what != nil {
			g.waitingFor = *what // before cancelling, which ends the wait
		}
		s.mu.Lock()
		if call.waiters--; call.waiters == 0 {
			call.cancel() // nobody waits for it any more
			// A caller coming after must not join cancelled work.
			if s.calls[key] == call {
				delete(s.calls, key)
			}
		}
		s.mu.Unlock()
		return nil, g
	}
}

func (s *sharedWork) run(key string, call *sharedCall, ctx context.Context, work func(context.Context) (any, error)) {
	defer call.cancel()
	call.val, call.err = runRecovering(ctx, work)
	s.mu.Lock()
	if s.calls[key] == call {
		delete(s.calls, key)
	}
	s.mu.Unlock()
	close(call.done)
}

// runRecovering runs work, turning a panic into its error. Shared work runs
// in a goroutine of its own, outside the supervisor that restarts a crashed
// worker: a panic in go-git on a hostile server's data would otherwise end
// the process, the API server and etcd with it (attacker review).
func runRecovering(ctx context.Context, work func(context.Context) (any, error)) (val any, err error) {
	defer func() {
		if r := recover(); r != nil {
			klog.FromContext(ctx).Error(nil, "Git work panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			val, err = nil, fmt.Errorf("internal error in git work: %v", r)
		}
	}()
	return work(ctx)
}
