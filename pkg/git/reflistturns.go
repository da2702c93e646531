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

// largeRefListTime bounds how long a list may take to arrive once it has a
// turn (16 MiB at 280 KiB/s), and largeRefFetchTime how long a fetch holds
// one in all, its pack included, so that a server trickling above the
// low-speed check, or stalling with the check off, cannot keep a turn for
// all of a sync's timeout. Vars for tests.
var (
	largeRefListTime  = time.Minute
	largeRefFetchTime = 5 * time.Minute
)

var errTurnAfterEnd = errors.New("internal error: a ref list read after its transfer ended")

// refListTurn is a transfer's turn to read a large ref list. It is held
// until the transfer ends: a listing then has turned the list into
// references, and a fetch, which keeps the parsed list while its pack comes
// (58 MiB of live heap for a list of 16 MiB, measured by a review), has its
// pack. A pinned commit's fallback reads its second list under the same
// turn.
type refListTurn struct {
	// waiting pauses the transfer's low-speed check.
	waiting atomic.Bool

	mu       sync.Mutex
	giveBack func() // set while the turn is held
	since    time.Time
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
		return errTurnAfterEnd
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
		return errTurnAfterEnd
	}
	turn.giveBack, turn.since = release, time.Now()
	turn.timeout = time.AfterFunc(largeRefListTime, func() {
		t.fail(newError(ReasonTimeout, errStalled, "%s: the server's list of refs is over %s and took over %s to arrive",
			t.doing, formatBytes(smallRefListBytes), largeRefListTime))
	})
	return nil
}

// refListRead is told when go-git has read a list: a fetch holding a turn
// then has until largeRefFetchTime for its pack.
func (t *transfer) refListRead() {
	turn := &t.turn
	turn.mu.Lock()
	defer turn.mu.Unlock()
	if t.kind != transferFetch || turn.giveBack == nil {
		return
	}
	turn.timeout.Stop()
	turn.timeout = time.AfterFunc(largeRefFetchTime-time.Since(turn.since), func() {
		t.fail(newError(ReasonTimeout, errStalled, "%s: the server's list of refs is over %s, so the fetch holds one of the %d turns for such lists, for at most %s; it took longer",
			t.doing, formatBytes(smallRefListBytes), maxLargeRefLists, largeRefFetchTime))
	})
}

// end gives the turn back, if it is held, as the transfer ends; no turn is
// taken after.
func (turn *refListTurn) end() {
	turn.mu.Lock()
	defer turn.mu.Unlock()
	turn.ended = true
	if turn.giveBack != nil {
		turn.timeout.Stop()
		turn.giveBack()
		turn.giveBack, turn.timeout = nil, nil
	}
}
