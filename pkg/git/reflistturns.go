package git

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Ref lists over smallRefListBytes are read two at a time (maxLargeRefLists),
// whichever listings and fetches read them. go-git holds a whole ref list in
// memory as it parses it, and more while a listing turns it into references:
// a list of 16 MiB of short refs took 74 MiB of live heap at that peak
// (measured), so the 8 listing and 4 fetch slots, which bound how many lists
// are read and not how large each is, let hostile servers take about 900 MiB
// of the process the API server and etcd share. Most repositories' lists are
// tens of KiB (a ref is about 60 bytes) and never wait for a turn.
const (
	smallRefListBytes = 1 << 20
	maxLargeRefLists  = 2
)

// largeRefListTime bounds how long a transfer holds a turn (16 MiB at
// 280 KiB/s), so that a server trickling its list above the low-speed check,
// or stalling with the check off, cannot keep a turn for all of a sync's
// timeout. A var for tests.
var largeRefListTime = time.Minute

// refListTurn is a transfer's turn to read a large ref list. A listing holds
// it until it ends, past go-git's and its own handling of the list; a fetch
// gives it back once go-git has read the list, before the pack (it keeps the
// parsed list while the pack comes: the fetch slots bound how many do), and
// takes another for a second list (a pinned commit's fallback).
type refListTurn struct {
	// waiting pauses the transfer's low-speed check.
	waiting atomic.Bool

	mu       sync.Mutex
	giveBack func() // set while the turn is held
	timeout  *time.Timer
	ended    bool // the transfer ended: no turn is taken any more
}

// waitForTurnIfLarge is told, after each read of a ref list, how many bytes
// of it have been read; past smallRefListBytes it waits for a turn, at most
// one per tenant, before go-git may parse more.
func (t *transfer) waitForTurnIfLarge(read int64) error {
	if read <= smallRefListBytes || t.turns == nil {
		return nil
	}
	turn := &t.turn
	turn.mu.Lock()
	held, ended := turn.giveBack != nil, turn.ended
	turn.mu.Unlock()
	switch {
	case held:
		return nil
	case ended:
		return errors.New("internal error: a ref list read after its transfer ended")
	}

	turn.waiting.Store(true)
	release, err := waitForSlot(t.ctx, t.turns, t.tenant, largeRefListWait, fmt.Sprintf(
		"a turn to read a list of refs over %s (%d such lists are read at once, one per namespace)",
		formatBytes(smallRefListBytes), maxLargeRefLists))
	turn.waiting.Store(false)
	if err != nil {
		return classify(err, t.doing+": waiting for a turn to read the server's list of refs")
	}
	turn.mu.Lock()
	defer turn.mu.Unlock()
	if turn.ended {
		release()
		return errors.New("internal error: a ref list read after its transfer ended")
	}
	turn.giveBack = release
	turn.timeout = time.AfterFunc(largeRefListTime, func() {
		t.fail(newError(ReasonTimeout, errStalled, "%s: the server's list of refs is over %s and took over %s to arrive",
			t.doing, formatBytes(smallRefListBytes), largeRefListTime))
	})
	return nil
}

// refListRead gives a fetch's turn back once go-git has read its list.
func (t *transfer) refListRead() {
	if t.kind == transferFetch {
		t.turn.giveUp(false)
	}
}

// giveUp gives the turn back, if it is held; once the transfer has ended
// no turn is taken any more.
func (turn *refListTurn) giveUp(ended bool) {
	turn.mu.Lock()
	defer turn.mu.Unlock()
	turn.ended = turn.ended || ended
	if turn.giveBack != nil {
		turn.timeout.Stop()
		turn.giveBack()
		turn.giveBack, turn.timeout = nil, nil
	}
}
