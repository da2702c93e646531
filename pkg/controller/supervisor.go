package controller

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// WorkFunc does one round of work for key and returns when the next round is
// due unless a trigger comes first.
type WorkFunc func(ctx context.Context, key string) time.Duration

// SupervisorOptions set how crashes are handled.
type SupervisorOptions struct {
	// RestartIntensity crashes within RestartPeriod mark a worker stalled
	// (as OTP's restart intensity does).
	RestartIntensity int
	RestartPeriod    time.Duration
	// RestartBackoff is the first delay before a crashed worker restarts; it
	// doubles with each crash in a row, up to MaxRestartBackoff.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	// StalledRetry is how long a stalled worker waits before trying again.
	StalledRetry time.Duration
	// OnStall is told when a worker stalls, with the last panic's message,
	// under the supervisor's context: its report ends with the workers.
	OnStall func(ctx context.Context, key, message string)
	// OnStart is told when a worker of key starts, and OnExit when a stopped
	// worker of key has returned (not when a crash restarts it): nothing of
	// that worker runs any more and its context is cancelled. A newer worker
	// of the same key may start before an old one has returned.
	OnStart, OnExit func(key string)
}

// Supervisor owns one worker goroutine per key.
type Supervisor struct {
	work WorkFunc
	opts SupervisorOptions
	ctx  context.Context

	mu      sync.Mutex
	workers map[string]*worker
	// stopping holds workers told to quit that have not returned yet: no
	// new worker of their key starts meanwhile.
	stopping map[string]*worker
	// draining is set by Wait: no worker starts after it.
	draining bool
	// running counts worker goroutines and stall reports, for Wait.
	running sync.WaitGroup
}

type worker struct {
	key     string
	trigger chan struct{}
	cancel  context.CancelFunc
	stopped bool
	crashes []time.Time
	backoff time.Duration
	// done counts this worker's goroutine (and a restart's), for StopThen.
	done sync.WaitGroup
	// quit, closed, ends the worker after the work in hand (StopThen).
	quit chan struct{}
}

// NewSupervisor returns a supervisor whose workers stop when ctx ends.
func NewSupervisor(ctx context.Context, work WorkFunc, opts SupervisorOptions) *Supervisor {
	if opts.RestartIntensity == 0 {
		opts.RestartIntensity = 5
	}
	if opts.RestartPeriod == 0 {
		opts.RestartPeriod = 5 * time.Minute
	}
	if opts.RestartBackoff == 0 {
		opts.RestartBackoff = time.Second
	}
	if opts.MaxRestartBackoff == 0 {
		opts.MaxRestartBackoff = 5 * time.Minute
	}
	if opts.StalledRetry == 0 {
		opts.StalledRetry = 10 * time.Minute
	}
	return &Supervisor{work: work, opts: opts, ctx: ctx, workers: map[string]*worker{}, stopping: map[string]*worker{}}
}

// Ensure starts a worker for key unless one runs; a new worker works at once.
func (s *Supervisor) Ensure(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.workers[key]; ok {
		return
	}
	if _, ok := s.stopping[key]; ok {
		return // StopThen's then decides again once it has returned
	}
	if s.draining {
		return
	}
	w := &worker{key: key, trigger: make(chan struct{}, 1), quit: make(chan struct{}), backoff: s.opts.RestartBackoff}
	s.workers[key] = w
	if s.opts.OnStart != nil {
		s.opts.OnStart(key) // before the worker runs: its exit, however soon, comes after
	}
	s.start(w, 0)
}

// Trigger asks key's worker to work now; it reports whether a worker exists.
// Triggers that arrive while one is pending merge into it.
func (s *Supervisor) Trigger(key string) bool {
	s.mu.Lock()
	w, ok := s.workers[key]
	s.mu.Unlock()
	if !ok {
		return false
	}
	select {
	case w.trigger <- struct{}{}:
	default:
	}
	return true
}

// Stop ends key's worker, cancelling the work in hand (also of a worker
// StopThen is letting finish).
func (s *Supervisor) Stop(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.removeLocked(key)
	if w == nil {
		w = s.stopping[key]
	}
	if w != nil && w.cancel != nil {
		w.cancel()
	}
}

// StopThen ends key's worker once the work in hand is done (a sync is
// never cut between its first and last write), and calls then when it has
// returned (at once if there is none): a replica hands a GitRepository to
// another only after that. Until then no new worker of key starts.
func (s *Supervisor) StopThen(key string, then func()) {
	s.mu.Lock()
	w := s.removeLocked(key)
	if w != nil {
		s.stopping[key] = w
	} else {
		w = s.stopping[key]
	}
	s.mu.Unlock()
	if w == nil {
		then()
		return
	}
	go func() {
		defer logPanic(repoLogger(s.ctx, key), "Panic after a worker stopped")
		w.done.Wait()
		s.mu.Lock()
		if s.stopping[key] == w {
			delete(s.stopping, key)
		}
		s.mu.Unlock()
		then()
	}()
}

// Has reports whether key has a worker that takes work (not one told to
// quit).
func (s *Supervisor) Has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, running := s.workers[key]
	return running
}

// Busy reports whether key has a worker, or one still returning.
func (s *Supervisor) Busy(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, running := s.workers[key]
	_, stopping := s.stopping[key]
	return running || stopping
}

// removeLocked forgets key's worker and tells it to quit after its work in
// hand. Called with s.mu held.
func (s *Supervisor) removeLocked(key string) *worker {
	w, ok := s.workers[key]
	if !ok {
		return nil
	}
	w.stopped = true
	close(w.quit)
	delete(s.workers, key)
	return w
}

// Len is the number of workers.
func (s *Supervisor) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.workers)
}

// Wait returns once every worker has returned; call it after the
// supervisor's context ended. Leadership handed over waits on it, so that no
// two processes sync one GitRepository at once.
func (s *Supervisor) Wait() {
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	s.running.Wait()
}

// start runs w's loop in a new goroutine after delay, and reports whether it
// did (not once Wait began). Called with s.mu held.
func (s *Supervisor) start(w *worker, delay time.Duration) bool {
	if s.draining {
		return false
	}
	ctx, cancel := context.WithCancel(s.ctx)
	w.cancel = cancel
	s.running.Add(1)
	w.done.Add(1)
	go func() {
		// Deferred first, so they run last: a crash restarts the worker
		// (crashed → start → Add) while this goroutine still counts.
		defer s.running.Done()
		defer w.done.Done()
		defer func() {
			r := recover()
			cancel() // ends what this run started under its context (health waits)
			if r != nil && s.crashed(w, fmt.Sprint(r), debug.Stack()) {
				return // restarted, under a context of its own
			}
			if s.opts.OnExit != nil {
				s.opts.OnExit(w.key)
			}
		}()
		s.loop(ctx, w, delay)
	}()
	return true
}

func (s *Supervisor) loop(ctx context.Context, w *worker, delay time.Duration) {
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.quit:
			return
		case <-w.trigger:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
		if ctx.Err() != nil || isClosed(w.quit) { // both were ready; the end wins
			return
		}
		next := s.work(ctx, w.key)
		s.mu.Lock()
		w.backoff = s.opts.RestartBackoff
		s.mu.Unlock()
		timer.Reset(next)
	}
}

// crashed restarts a worker that panicked, after a backoff that doubles with
// each crash; past the restart intensity the key is reported stalled and
// retried slowly. Other workers are not touched. It reports whether the
// worker was restarted (not when it had been stopped).
func (s *Supervisor) crashed(w *worker, message string, stack []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.stopped || s.ctx.Err() != nil {
		return false
	}
	now := time.Now()
	w.crashes = append(w.crashes, now)
	for len(w.crashes) > 0 && now.Sub(w.crashes[0]) > s.opts.RestartPeriod {
		w.crashes = w.crashes[1:]
	}
	logger := repoLogger(s.ctx, w.key)
	logger.Error(nil, "Worker panicked; restarting it", "panic", message, "crashesInPeriod", len(w.crashes))
	workerRestarts.Inc()
	logger.V(4).Info("Worker panic stack", "stack", string(stack))
	delay := w.backoff
	w.backoff = min(2*w.backoff, s.opts.MaxRestartBackoff)
	if len(w.crashes) >= s.opts.RestartIntensity {
		delay = s.opts.StalledRetry
		w.crashes = nil
		workerStalls.Inc()
		if s.opts.OnStall != nil {
			msg := fmt.Sprintf("the worker crashed %d times within %s; retrying in %s; last panic: %s",
				s.opts.RestartIntensity, s.opts.RestartPeriod, s.opts.StalledRetry, message)
			s.running.Add(1) // a stall report is work Wait waits for too
			go func() {
				defer s.running.Done()
				defer logPanic(repoLogger(s.ctx, w.key), "Panic while reporting a stalled worker")
				s.opts.OnStall(s.ctx, w.key, msg)
			}()
		}
	}
	return s.start(w, delay)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
