package controller

import (
	"sync"
	"time"
)

// pushWindow: pushes to one GitRepository within this long of the sync a
// push started wait for one more sync at its end, so a burst of pushes costs
// at most two syncs per window, and the second sees the newest commit.
const pushWindow = time.Second

// pushPacer starts a sync for the first push at once and folds the pushes
// that follow within pushWindow into one sync at the window's end.
type pushPacer struct {
	window  time.Duration
	trigger func(key string)
	now     func() time.Time

	mu      sync.Mutex
	started map[string]time.Time // key → when a push last started a sync
	waiting map[string]bool      // key → a sync at the window's end is scheduled
}

func newPushPacer(window time.Duration, trigger func(key string)) *pushPacer {
	return &pushPacer{window: window, trigger: trigger, now: time.Now,
		started: map[string]time.Time{}, waiting: map[string]bool{}}
}

// push starts or schedules the sync of key for a push received now.
func (p *pushPacer) push(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.forgetOld(now)
	last, recent := p.started[key]
	switch {
	case !recent || now.Sub(last) >= p.window:
		p.started[key] = now
		p.trigger(key)
	case !p.waiting[key]:
		p.waiting[key] = true
		time.AfterFunc(last.Add(p.window).Sub(now), func() {
			p.mu.Lock()
			delete(p.waiting, key)
			p.started[key] = p.now()
			p.mu.Unlock()
			p.trigger(key)
		})
	}
}

// forgetOld drops keys whose window has passed, so the maps hold only the
// GitRepositories pushed to within the last window.
func (p *pushPacer) forgetOld(now time.Time) {
	for key, at := range p.started {
		if now.Sub(at) >= p.window && !p.waiting[key] {
			delete(p.started, key)
		}
	}
}
