package git

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/falsesystems/alumiini/pkg/slots"
)

// errStalled marks a transfer stopped for moving too slowly: retrying a
// server that stopped answering would only hold a fetch slot longer.
var errStalled = errors.New("transfer stalled")

// transfer is one listing or fetch. It counts the bytes the server sends,
// whichever transport carries them, and stops the operation when they pass
// the byte limit or stop coming: go-git has no such bounds of its own.
type transfer struct {
	doing    string
	limit    int64
	lowBytes int64
	lowTime  time.Duration
	// ca is the CA bundle the HTTP transport trusts for this transfer.
	ca []byte
	id string

	ctx    context.Context
	cancel context.CancelCauseFunc
	read   atomic.Int64
	// kind ("listing" or "fetch"), start and failed are for the metrics.
	kind   string
	start  time.Time
	failed atomic.Bool
	// shallow is whether the fetch running asks for a depth: go-git then
	// reads shallow lines before the pack (see packHead).
	shallow atomic.Bool
	// tenant and turns: a ref list past smallRefListBytes waits for a turn
	// (see waitForTurnIfLarge), at most one per tenant.
	tenant string
	turns  *slots.Slots
	turn   refListTurn

	mu    sync.Mutex
	conns []net.Conn
}

type transferKey struct{}

// transfers lets the SSH dialer find the transfer a connection belongs to:
// go-git hands it only the proxy URL, which names the transfer's id.
var (
	transfers      sync.Map
	lastTransferID atomic.Uint64
)

// startTransfer begins a transfer of doing (e.g. "fetching branch ..."). The
// operation must run under the returned transfer's ctx and call end after.
func (c *Cache) startTransfer(ctx context.Context, doing string, src Source) *transfer {
	t := &transfer{
		doing:    doing,
		limit:    c.opts.MaxFetchBytes,
		lowBytes: c.opts.LowSpeedBytes,
		lowTime:  c.opts.LowSpeedTime,
		ca:       caBundle(src.Auth),
		tenant:   src.Tenant,
		turns:    c.largeRefLists,
		id:       strconv.FormatUint(lastTransferID.Add(1), 10),
		kind:     transferFetch,
		start:    time.Now(),
	}
	if strings.HasPrefix(doing, "listing") {
		// A listing is the server's ref advertisement alone, which
		// boundedBody and sessionOutput bound as go-git reads it. This bounds
		// the bytes on the wire too: SSH's framing added up to 31% to real
		// refs (a packet per ref), and 4× is well above that.
		t.kind, t.limit = transferListing, min(t.limit, 4*maxAdvertisementBytes)
	}
	t.ctx, t.cancel = context.WithCancelCause(context.WithValue(ctx, transferKey{}, t))
	transfers.Store(t.id, t)
	// go-git's SSH transport blocks on its connection where no context
	// reaches (the handshake, for one): closing it is what ends it.
	context.AfterFunc(t.ctx, t.closeConns)
	if t.lowTime > 0 {
		go t.watch()
	}
	return t
}

// result turns err, the result of an operation run under t.ctx, into an
// Error. Why the context ended, if it did, comes first: closing a connection
// to stop go-git makes it fail with a mere "use of closed network connection".
func (t *transfer) result(err error) error {
	if err == nil {
		return nil
	}
	t.failed.Store(true)
	if cause := context.Cause(t.ctx); cause != nil {
		return classify(cause, t.doing)
	}
	return classify(err, t.doing)
}

// end releases the transfer once its operation has returned.
func (t *transfer) end() {
	transfers.Delete(t.id)
	t.cancel(nil)
	t.turn.end()
	result := "ok"
	if t.failed.Load() {
		result = "error"
	}
	transfersTotal.WithLabelValues(t.kind, result).Inc()
	transferDuration.WithLabelValues(t.kind).Observe(time.Since(t.start).Seconds())
	transferBytes.WithLabelValues(t.kind).Add(float64(t.read.Load()))
}

// count adds n bytes received and stops the transfer past its limit.
func (t *transfer) count(n int) error {
	if t.read.Add(int64(n)) > t.limit && t.limit > 0 {
		return t.fail(newError(ReasonLimitExceeded, nil, "%s: the server sent more than the limit of %s for one transfer",
			t.doing, formatBytes(t.limit)))
	}
	return nil
}

// fail stops the transfer for err, which result reports.
func (t *transfer) fail(err *Error) error {
	t.cancel(err)
	return err
}

func (t *transfer) closeConns() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, conn := range t.conns {
		_ = conn.Close()
	}
}

// watch stops the transfer when fewer than lowBytes arrive within lowTime, as
// git's http.lowSpeedLimit and http.lowSpeedTime do.
func (t *transfer) watch() {
	tick := time.NewTicker(max(t.lowTime/4, 10*time.Millisecond))
	defer tick.Stop()
	mark, markedAt := t.read.Load(), time.Now()
	for {
		select {
		case <-t.ctx.Done():
			return
		case now := <-tick.C:
			n := t.read.Load()
			if n-mark >= t.lowBytes || t.turn.waiting.Load() {
				// Waiting for a turn is not the server stalling.
				mark, markedAt = n, now
				continue
			}
			if now.Sub(markedAt) >= t.lowTime {
				t.fail(newError(ReasonTimeout, errStalled, "%s: the server stalled: less than %s in %s",
					t.doing, formatBytes(t.lowBytes), t.lowTime))
				return
			}
		}
	}
}

// track makes conn count toward the transfer and close when it ends.
func (t *transfer) track(conn net.Conn) net.Conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ctx.Err() != nil {
		_ = conn.Close()
	}
	t.conns = append(t.conns, conn)
	return &countingConn{Conn: conn, t: t}
}

type countingConn struct {
	net.Conn
	t *transfer
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if cerr := c.t.count(n); cerr != nil {
		return n, cerr
	}
	return n, err
}

func transferFrom(ctx context.Context) *transfer {
	t, _ := ctx.Value(transferKey{}).(*transfer)
	return t
}

// formatBytes writes n as people read sizes: 64 KiB, 1.5 MiB.
func formatBytes(n int64) string {
	if n < 1<<10 {
		return fmt.Sprintf("%d bytes", n)
	}
	v, unit := float64(n)/(1<<10), "KiB"
	for _, next := range []string{"MiB", "GiB", "TiB"} {
		if v < 1<<10 {
			break
		}
		v, unit = v/(1<<10), next
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + " " + unit
}
