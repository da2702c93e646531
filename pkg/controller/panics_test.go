package controller

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	fake "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned/fake"
	listers "github.com/falsesystems/alumiini/pkg/generated/listers/alumiini/v1alpha1"
)

// The goroutines below run outside the supervisor, so a panic in any of
// them, unrecovered, ends this test binary: each test fails that way
// without its recovery.

// TestAPanicShowingASyncInProgressLeavesTheSyncGoing: the write of phase
// Syncing panics; the process lives on (without the recovery this binary
// dies), and the sync's worker gets its GitRepository back untouched.
func TestAPanicShowingASyncInProgressLeavesTheSyncGoing(t *testing.T) {
	repo := &v1alpha1.GitRepository{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "app", ResourceVersion: "1", Generation: 2}}
	client := fake.NewSimpleClientset(repo.DeepCopy())
	var writes atomic.Int32
	client.PrependReactor("update", "gitrepositories", func(clienttesting.Action) (bool, runtime.Object, error) {
		writes.Add(1)
		panic("a status write exploded")
	})
	r := &Reconciler{Client: client}
	stop := r.showSyncingAfter(context.Background(), repo, "0123456789abcdef", 3, 0)
	for deadline := time.Now().Add(10 * time.Second); writes.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("phase Syncing was never written")
		}
	}
	stop()
	if repo.ResourceVersion != "1" || repo.Status.Phase != "" {
		t.Errorf("the worker's GitRepository changed after the failed write: %+v", repo)
	}
}

// panickingLister panics on its first Get, as a bug on an odd object
// would, and answers from the index after.
type panickingLister struct {
	listers.GitRepositoryLister
	gets atomic.Int32
}

func (l *panickingLister) GitRepositories(namespace string) listers.GitRepositoryNamespaceLister {
	if l.gets.Add(1) == 1 {
		panic("settling exploded")
	}
	return l.GitRepositoryLister.GitRepositories(namespace)
}

// TestAPanicSettlingOwnershipIsRetried: the first look at a GitRepository's
// ownership panics; the process goes on, and the GitRepository is settled
// (claimed, its worker started) on the retry.
func TestAPanicSettlingOwnershipIsRetried(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newTwoReplicas(ctx, t, "a")
	var syncs atomic.Int32
	supervisor := NewSupervisor(ctx, func(context.Context, string) time.Duration {
		syncs.Add(1)
		return time.Hour
	}, SupervisorOptions{})
	lister := &panickingLister{GitRepositoryLister: listers.NewGitRepositoryLister(f.index)}
	o := newOwnership(Share{View: f.view, Name: "a", Identity: "a_1", Recheck: time.Second}, f.client, lister, supervisor)
	go o.run(ctx)
	o.queue.Add(f.key)
	for deadline := time.Now().Add(10 * time.Second); syncs.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the panic the GitRepository was not settled: %d looks, worker %v", lister.gets.Load(), supervisor.Has(f.key))
		}
	}
	if lister.gets.Load() < 2 {
		t.Errorf("settled in %d looks, want the panicking one and a retry", lister.gets.Load())
	}
}

// TestAPanicReportingAStallLeavesTheOthersRunning: the stall report of a
// crashing worker panics; the other workers keep running.
func TestAPanicReportingAStallLeavesTheOthersRunning(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var reports, good atomic.Int32
	s := NewSupervisor(ctx, func(_ context.Context, key string) time.Duration {
		if key == "bad" {
			panic("rendering exploded")
		}
		good.Add(1)
		return 20 * time.Millisecond
	}, SupervisorOptions{RestartIntensity: 2, RestartPeriod: time.Minute, RestartBackoff: time.Millisecond, StalledRetry: time.Hour,
		OnStall: func(context.Context, string, string) {
			reports.Add(1)
			panic("the stall report exploded")
		}})
	s.Ensure("bad")
	s.Ensure("good")
	for deadline := time.Now().Add(10 * time.Second); reports.Load() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the crashing worker was never reported stalled")
		}
	}
	before := good.Load()
	for deadline := time.Now().Add(10 * time.Second); good.Load() == before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the other worker stopped running after the stall report panicked")
		}
	}
}

// TestAPanicAfterAWorkerStoppedIsLogged: what StopThen runs once the worker
// has returned (a hand-over's release) panics; the panic is logged, naming
// the GitRepository, and the process goes on.
func TestAPanicAfterAWorkerStoppedIsLogged(t *testing.T) {
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	defer cancel()
	s := NewSupervisor(ctx, func(context.Context, string) time.Duration { return time.Hour }, SupervisorOptions{})
	s.Ensure("team/app")
	s.StopThen("team/app", func() { panic("the release exploded") })
	logged := func() string { return logger.GetSink().(ktesting.Underlier).GetBuffer().String() }
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logged(), "Panic after a worker stopped"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the panic was not logged; the log holds:\n%s", logged())
		}
	}
	if log := logged(); !strings.Contains(log, "the release exploded") || !strings.Contains(log, `gitRepository="team/app"`) {
		t.Errorf("the log does not name the panic and the GitRepository:\n%s", log)
	}
}
