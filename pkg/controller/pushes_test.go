package controller

import (
	"sync"
	"testing"
	"time"
)

// TestABurstOfPushesCostsAtMostTwoSyncs: ten pushes within a second start
// one sync at once and one at the end of the window, which sees the newest
// commit; a push after the window starts one at once again.
func TestABurstOfPushesCostsAtMostTwoSyncs(t *testing.T) {
	var mu sync.Mutex
	var syncs []time.Duration
	start := time.Now()
	pacer := newPushPacer(200*time.Millisecond, func(key string) {
		mu.Lock()
		syncs = append(syncs, time.Since(start))
		mu.Unlock()
	})
	for range 10 {
		pacer.push("ns/app")
		time.Sleep(15 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	got := append([]time.Duration(nil), syncs...)
	mu.Unlock()
	if len(got) != 2 || got[0] > 50*time.Millisecond || got[1] < 190*time.Millisecond {
		t.Fatalf("syncs at %v, want one at once and one at the end of the 200ms window", got)
	}
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
