package apiserver

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apiserver/pkg/audit"
	"k8s.io/klog/v2"
)

// finishWritesTimeout bounds how long a stop waits for Server.FinishWrites
// (the controller's syncs that are writing), drainTimeout how long it then
// waits for requests in flight, and auditFlushTimeout how long it then
// waits for buffered audit events to be sent: with the storage's close and
// the controller's own stop after them, inside a pod's default 30 s grace
// period.
const (
	finishWritesTimeout = 5 * time.Second
	drainTimeout        = 10 * time.Second
	auditFlushTimeout   = 5 * time.Second
)

// prepareStop returns a channel closed as a stop begins, once FinishWrites
// has returned: sync requests still waiting for their result are answered
// then. It also makes the audit backend stoppable by a stop that gives up
// on the drain. After New, k8s.io/apiserver calls only Run and Shutdown of
// the server's AuditBackend field (its handler chain keeps the backend it
// was built with, the same one underneath), so wrapping it here is enough.
func (s *Server) prepareStop() (<-chan struct{}, error) {
	if s.GenericAPIServer.AuditBackend != nil {
		s.audit = &drainBoundAudit{Backend: s.GenericAPIServer.AuditBackend, givenUp: make(chan struct{})}
		s.GenericAPIServer.AuditBackend = s.audit
	}
	s.stopping = make(chan struct{})
	// One hook, in this order: k8s.io/apiserver runs pre-shutdown hooks
	// before it stops taking requests (so the syncs FinishWrites waits for
	// can still write their outcome), but in no order among themselves, and
	// a waiting request whose sync finishes should get its result, not the
	// stop's answer.
	if err := s.GenericAPIServer.AddPreShutdownHook("alumiini-finish-syncs", func() error {
		defer close(s.stopping)
		if s.FinishWrites != nil {
			ctx, cancel := context.WithTimeout(context.Background(), finishWritesTimeout)
			defer cancel()
			s.FinishWrites(ctx)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("adding the hook that finishes syncs and answers waiting sync requests: %w", err)
	}
	return s.stopping, nil
}

// Run serves until ctx is cancelled, then drains in-flight requests (for
// at most drainTimeout) and stops the storage the server owns. Every write
// answered is on disk: etcd answers only what its log holds.
func (s *Server) Run(ctx context.Context) error {
	prepared := s.GenericAPIServer.PrepareRun()
	served := make(chan error, 1)
	go func() { served <- prepared.RunWithContext(ctx) }()
	drained, err := untilDrained(ctx, s.stopping, served)
	if !drained {
		s.leaveRequestsBehind(klog.FromContext(ctx))
	}
	if s.stopStorage != nil {
		s.stopStorage()
	}
	return err
}

// untilDrained reports whether serving ended, with its error, within
// drainTimeout of the stop's hook returning (hooked closed), after ctx's
// end. k8s.io/apiserver waits for each request without a bound of its own:
// for one blocked writing to a client that stopped reading (a watch's
// included), until the connection breaks; for one still working, up to the
// request timeout (60 s). Either held the stop past a pod's grace period,
// and the SIGKILL that followed left the embedded etcd unclosed.
func untilDrained(ctx context.Context, hooked <-chan struct{}, served <-chan error) (bool, error) {
	select {
	case err := <-served:
		return true, err
	case <-ctx.Done():
	}
	hook := time.NewTimer(finishWritesTimeout + time.Second) // should another hook hold ours back
	defer hook.Stop()
	select {
	case err := <-served:
		return true, err
	case <-hooked:
	case <-hook.C:
	}
	timer := time.NewTimer(drainTimeout)
	defer timer.Stop()
	select {
	case err := <-served:
		return true, err
	case <-timer.C:
		return false, nil
	}
}

// leaveRequestsBehind does what k8s.io/apiserver does once requests have
// drained, for a stop that stopped waiting for them: sends the audit events
// buffered so far, and closes the storage's clients (its watch cache's etcd
// watches held the embedded etcd's close for its request timeout, 8 s).
// Both are safe to do again should the drain still end.
func (s *Server) leaveRequestsBehind(logger klog.Logger) {
	logger.Info("Stopping with requests still in flight: their connections close as the process exits", "waited", drainTimeout)
	if s.audit != nil {
		s.audit.flush(logger, auditFlushTimeout)
	}
	s.GenericAPIServer.Destroy()
}

// drainBoundAudit is the server's audit backend, stopped once requests have
// drained or a stop gave up waiting for them. k8s.io/apiserver stops it,
// sending what a buffered backend (the webhook's, by default) holds, only
// after the drain, so a client that stopped reading would cost every stop
// its last batch of audit events (the webhook's batches wait up to 30 s by
// default).
type drainBoundAudit struct {
	audit.Backend
	givenUp chan struct{}
}

// Run runs the backend until drained is closed, or the stop gives up.
func (a *drainBoundAudit) Run(drained <-chan struct{}) error {
	stop := make(chan struct{})
	go func() {
		defer close(stop)
		select {
		case <-drained:
		case <-a.givenUp:
		}
	}()
	return a.Backend.Run(stop)
}

// flush stops the backend and waits up to timeout for it to send what it
// holds.
func (a *drainBoundAudit) flush(logger klog.Logger, timeout time.Duration) {
	close(a.givenUp)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		a.Backend.Shutdown()
	}()
	select {
	case <-sent:
	case <-time.After(timeout):
		logger.Info("Stopping before the audit backend sent all its events", "waited", timeout)
	}
}
