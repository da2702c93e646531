package controller

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
)

// TestABurstOfPushesCostsAtMostTwoSyncs: ten pushes within a second start
// one sync at once and one at the end of the window, which sees the newest
// commit; a push after the window starts one at once again.
func TestABurstOfPushesCostsAtMostTwoSyncs(t *testing.T) {
	var mu sync.Mutex
	var syncs []time.Duration
	start := time.Now()
	pacer := newPushPacer(time.Second, func(key string) {
		mu.Lock()
		syncs = append(syncs, time.Since(start))
		mu.Unlock()
	})
	for range 10 {
		pacer.push("ns/app")
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(1200 * time.Millisecond)
	mu.Lock()
	got := append([]time.Duration(nil), syncs...)
	mu.Unlock()
	if len(got) != 2 || got[0] > 500*time.Millisecond || got[1] < time.Second {
		t.Fatalf("syncs at %v, want one at once and one at the end of the 1s window", got)
	}
	time.Sleep(time.Second) // the window of the sync at its end passes too
	pacer.push("ns/app")
	pacer.push("ns/other")
	mu.Lock()
	defer mu.Unlock()
	if len(syncs) != 4 {
		t.Errorf("pushes after the window (and to another GitRepository) wait: %v", syncs)
	}
	if len(pacer.started) > 2 {
		t.Errorf("the pacer keeps %d keys", len(pacer.started))
	}
}

// TestAPushShowsItsCommitOnlyOnceTheRemoteConfirmsIt: the payload's commit
// reaches a GitRepository's status only when its own listing saw it.
func TestAPushShowsItsCommitOnlyOnceTheRemoteConfirmsIt(t *testing.T) {
	push := &v1alpha1.PushRecord{Provider: "github", Ref: "refs/heads/main", Commit: strings.Repeat("a", 40)}
	if got := confirmed(push, strings.Repeat("a", 40)); got.Commit != push.Commit {
		t.Errorf("a confirmed commit was hidden: %+v", got)
	}
	for _, listed := range []string{"", strings.Repeat("b", 40)} {
		if got := confirmed(push, listed); got.Commit != "" || got.Ref != push.Ref {
			t.Errorf("listed %q: %+v", listed, got)
		}
	}
	if push.Commit == "" {
		t.Error("confirmed changed the record it was given")
	}
}
