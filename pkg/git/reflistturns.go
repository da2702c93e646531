package git

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Ref lists over smallRefListBytes are read a few at a time, whichever
// listings and fetches read them. go-git holds a whole ref list in memory as
// it parses it: a list of 16 MiB of short refs took about 74 MiB of live
// heap (measured), so the 8 listing and 4 fetch slots, which bound how many
// lists are read and not how large each is, let hostile servers take about
// 900 MiB of the process the API server and etcd share. Most repositories'
// lists are tens of KiB (a ref is about 60 bytes) and never wait.
const (
	smallRefListBytes = 1 << 20
	maxLargeRefLists  = 2
)

// largeRefListTime bounds how long a list may take to arrive once it has its
// turn (16 MiB at 280 KiB/s), so that a server trickling its list above the
// low-speed check cannot keep a turn for all of a sync's timeout. A var for
// tests.
var largeRefListTime = time.Minute

// refListTurn is a transfer's turn to read a large ref list, held until the
// list has been read. A fetch then keeps the parsed list while it reads the
// pack; the fetch slots bound how many do.
type refListTurn struct {
	// waiting pauses the transfer's low-speed check.
	waiting atomic.Bool

	mu sync.Mutex
	// list is the list that holds the turn (its reader), if any, since when.
	list      any
	giveBack  func()
	listSince time.Time
}

// admitRefs is told, after each read of a ref list, how many bytes of it
// have been read; past smallRefListBytes it waits for a turn before go-git
// may parse more, and then bounds how long the rest takes.
func (t *transfer) admitRefs(list any, read int64) error {
	if read <= smallRefListBytes || t.turns == nil {
		return nil
	}
	turn := &t.turn
	turn.mu.Lock()
	defer turn.mu.Unlock()
	if turn.list != list {
		release, err := t.waitForTurn()
		if err != nil {
			return err
		}
		turn.list, turn.giveBack, turn.listSince = list, release, time.Now()
	}
	if time.Since(turn.listSince) > largeRefListTime {
		return t.fail(newError(ReasonTimeout, errStalled, "%s: the server's list of refs is over %s and took over %s to arrive",
			t.doing, formatBytes(smallRefListBytes), largeRefListTime))
	}
	return nil
}

// waitForTurn waits for one of the turns, fairly between tenants.
func (t *transfer) waitForTurn() (release func(), err error) {
	t.turn.waiting.Store(true)
	defer t.turn.waiting.Store(false)
	waiting := time.Now()
	noted := waitingFor(t.ctx, fmt.Sprintf("a turn to read a list of refs over %s (%d such lists are read at once)",
		formatBytes(smallRefListBytes), maxLargeRefLists))
	release, err = t.turns.Acquire(t.ctx, t.tenant)
	noted()
	largeRefListWait.Observe(time.Since(waiting).Seconds())
	if err != nil {
		return nil, classify(err, t.doing+": waiting for a turn to read the server's list of refs")
	}
	return release, nil
}

// refsRead gives list's turn back once go-git has read it, or, for any list
// (nil), when the transfer ends. The transfer's context must have ended
// then, so that no read still waits for a turn.
func (t *transfer) refsRead(list any) {
	turn := &t.turn
	turn.mu.Lock()
	defer turn.mu.Unlock()
	if turn.list != nil && (list == nil || list == turn.list) {
		turn.giveBack()
		turn.list, turn.giveBack = nil, nil
	}
}
