package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
)

// TestACrashingWorkerDoesNotDisturbTheOthers runs a worker that panics on
// every round beside 50 healthy ones on a 100ms interval: the healthy ones
// keep their cadence, the crashing one is restarted with backoff and, past
// the restart intensity, reported stalled; the restart and stall counters
// say so.
func TestACrashingWorkerDoesNotDisturbTheOthers(t *testing.T) {
	restartsBefore, stallsBefore := testutil.ToFloat64(workerRestarts), testutil.ToFloat64(workerStalls)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const interval = 100 * time.Millisecond
	var mu sync.Mutex
	rounds := map[string][]time.Time{}
	stalled := make(chan string, 10)
	work := func(ctx context.Context, key string) time.Duration {
		mu.Lock()
		rounds[key] = append(rounds[key], time.Now())
		mu.Unlock()
		if key == "bad" {
			panic("rendering exploded")
		}
		return interval
	}
	s := NewSupervisor(ctx, work, SupervisorOptions{
		RestartIntensity: 3, RestartPeriod: time.Minute,
		RestartBackoff: 20 * time.Millisecond, StalledRetry: time.Hour,
		OnStall: func(_ context.Context, key, message string) { stalled <- key + ": " + message },
	})
	s.Ensure("bad")
	for i := 0; i < 50; i++ {
		s.Ensure(fmt.Sprintf("good-%02d", i))
	}
	const run = 2 * time.Second
	time.Sleep(run)

	select {
	case msg := <-stalled:
		if !strings.HasPrefix(msg, "bad: the worker crashed 3 times") || !strings.Contains(msg, "rendering exploded") {
			t.Errorf("stall message: %s", msg)
		}
	default:
		t.Error("the crashing worker was never reported stalled")
	}
	mu.Lock()
	defer mu.Unlock()
	if got := len(rounds["bad"]); got != 3 {
		t.Errorf("the crashing worker ran %d times, want 3 (then it waits StalledRetry)", got)
	}
	if got := testutil.ToFloat64(workerRestarts) - restartsBefore; got != 3 {
		t.Errorf("alumiini_worker_restarts_total moved by %v, want 3", got)
	}
	if got := testutil.ToFloat64(workerStalls) - stallsBefore; got != 1 {
		t.Errorf("alumiini_worker_stalls_total moved by %v, want 1", got)
	}
	for i := 0; i < 50; i++ {
		key := fmt.Sprintf("good-%02d", i)
		times := rounds[key]
		// 2s at 100ms is about 20 rounds; allow for a slow machine.
		if len(times) < 12 {
			t.Errorf("%s ran %d rounds in %s, want about %d", key, len(times), run, run/interval)
			continue
		}
		for j := 1; j < len(times); j++ {
			if gap := times[j].Sub(times[j-1]); gap > 4*interval {
				t.Errorf("%s waited %s between rounds, interval %s", key, gap, interval)
				break
			}
		}
	}
}

func TestTriggerWorksNowAndStopEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan string, 10)
	s := NewSupervisor(ctx, func(ctx context.Context, key string) time.Duration {
		ran <- key
		return time.Hour
	}, SupervisorOptions{})
	s.Ensure("a")
	<-ran // the first round runs at once
	if !s.Trigger("a") {
		t.Fatal("no worker for a")
	}
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("a trigger did not make the worker work")
	}
	s.Stop("a")
	if s.Trigger("a") || s.Len() != 0 {
		t.Error("a stopped worker still takes triggers")
	}
}

// TestOneURLsGitRepositoriesPollTogether: GitRepositories of one URL and
// interval that last listed it at different times poll at the same instant
// (one shared listing), half an interval to one and a half after their
// last listing; other URLs poll at other instants.
func TestOneURLsGitRepositoriesPollTogether(t *testing.T) {
	const url = "https://git.example.com/team/apps.git"
	interval := 10 * time.Minute
	start := time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC)
	first := pollAt(url, interval, start)
	// GitRepositories that listed anywhere in the interval before first's
	// half-interval mark all poll at first.
	for _, d := range []time.Duration{time.Second, 3 * time.Minute, 9*time.Minute + 59*time.Second} {
		from := first.Add(-interval/2 - d)
		at := pollAt(url, interval, from)
		if !at.Equal(first) {
			t.Errorf("listed %s before: polls at %s, not with the others at %s", interval/2+d, at, first)
		}
		if gap := at.Sub(from); gap < interval/2 || gap > 3*interval/2 {
			t.Errorf("listed %s before: the next poll is %s later", interval/2+d, gap)
		}
	}
	if spelled := pollAt("HTTPS://git.example.com/team/apps.git/", interval, start); !spelled.Equal(first) {
		t.Errorf("another spelling of the URL polls at %s, not %s", spelled, first)
	}
	offsets := map[time.Duration]bool{}
	for i := range 100 {
		at := pollAt(fmt.Sprintf("https://git.example.com/team/app-%d.git", i), interval, start)
		offsets[at.Sub(start)%interval] = true
	}
	if len(offsets) < 90 {
		t.Errorf("100 URLs poll at only %d instants of the interval", len(offsets))
	}
}

// TestStopCancelsAWorkerLeftToFinish: a worker StopThen lets finish its
// sync is still cancelled by Stop (another process owns its GitRepository
// now), no new worker of its key starts before it has returned, and then
// runs once it has.
func TestStopCancelsAWorkerLeftToFinish(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started, cancelled := make(chan struct{}, 2), make(chan struct{})
	s := NewSupervisor(ctx, func(ctx context.Context, _ string) time.Duration {
		started <- struct{}{}
		<-ctx.Done()
		close(cancelled)
		return time.Hour
	}, SupervisorOptions{})
	s.Ensure("a")
	<-started
	thenRan := make(chan struct{})
	s.StopThen("a", func() { close(thenRan) })
	s.Ensure("a") // refused while the first still runs
	if !s.Busy("a") || s.Has("a") {
		t.Fatalf("while stopping: busy %v, has %v; want busy, no worker taking work", s.Busy("a"), s.Has("a"))
	}
	s.Stop("a")
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not cancel the worker StopThen was letting finish")
	}
	select {
	case <-thenRan:
	case <-time.After(10 * time.Second):
		t.Fatal("then did not run after the worker returned")
	}
	select {
	case <-started:
		t.Fatal("a second worker of the key started while the first was stopping")
	default:
	}
}

// notReady is a GitRepository whose Ready condition is False.
func notReady(namespace, name string) *v1alpha1.GitRepository {
	return &v1alpha1.GitRepository{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
}

// served reports whether key's ready series exists (and deletes it, which
// is the only way the client library tells).
func served(namespace, name string) bool { return ready.DeleteLabelValues(namespace, name) }

// TestSeriesGoWithTheLastWorkerAndStayGone: a worker stopped in the middle
// of a round (a GitRepository deleted mid-sync) finishes that round, whose
// late status write would set the gauge; only then is OnExit told (not on a
// crash restart), and the series goes. A status write landing after that (a
// health wait, a stall report) brings nothing back. Otherwise a tenant
// creating and deleting GitRepositories could pile series up on /metrics.
func TestSeriesGoWithTheLastWorkerAndStayGone(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &perRepository{workers: map[string]int{}}
	repo := notReady("tenant", "deleted-mid-sync")
	inRound := make(chan struct{})
	exited := make(chan string, 2)
	panicked := false // the restart runs after the panic, never beside it
	s := NewSupervisor(ctx, func(ctx context.Context, key string) time.Duration {
		if !panicked {
			panicked = true
			panic("first round crashes")
		}
		close(inRound)
		<-ctx.Done()      // the sync notices the stop only late ...
		p.showReady(repo) // ... and writes its status
		return time.Hour
	}, SupervisorOptions{RestartBackoff: time.Millisecond, OnStart: p.workerStarted, OnExit: func(key string) {
		p.workerExited(key)
		exited <- key
	}})
	s.Ensure("tenant/deleted-mid-sync")
	<-inRound
	s.Stop("tenant/deleted-mid-sync")
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("OnExit was never told")
	}
	select {
	case <-exited:
		t.Error("OnExit was told twice: once for the crash restart too")
	case <-time.After(100 * time.Millisecond):
	}
	if served("tenant", "deleted-mid-sync") {
		t.Error("the ready series is still there after the worker exited")
	}
	p.showReady(repo) // a health wait's write, after the exit
	if served("tenant", "deleted-mid-sync") {
		t.Error("a status write after the worker exited brought the ready series back")
	}
}

// TestAnOldWorkersExitLeavesTheNewOnesSeries: a GitRepository deleted and
// created again under its name gets a new worker while the old one is still
// returning; the old one's exit must not drop what the new one shows.
func TestAnOldWorkersExitLeavesTheNewOnesSeries(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &perRepository{workers: map[string]int{}}
	const key = "tenant/recreated"
	release := make(chan struct{})
	rounds := make(chan int32, 2)
	var round atomic.Int32
	exited := make(chan string, 2)
	s := NewSupervisor(ctx, func(ctx context.Context, key string) time.Duration {
		n := round.Add(1)
		rounds <- n
		if n == 1 {
			<-release // the old worker's sync, still going after its Stop
		} else {
			p.showReady(notReady("tenant", "recreated"))
		}
		return time.Hour
	}, SupervisorOptions{OnStart: p.workerStarted, OnExit: func(key string) {
		p.workerExited(key)
		exited <- key
	}})
	s.Ensure(key)
	<-rounds
	s.Stop(key)
	s.Ensure(key) // the new GitRepository's worker
	<-rounds
	close(release)
	<-exited // the old worker's
	if !served("tenant", "recreated") {
		t.Error("the old worker's exit dropped the new worker's series")
	}
	p.showReady(notReady("tenant", "recreated"))
	s.Stop(key)
	<-exited
	if served("tenant", "recreated") {
		t.Error("the series outlived the last worker")
	}
}
