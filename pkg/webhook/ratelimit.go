package webhook

import (
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	// maxSources bounds the per-source limiter map, so a flood from many
	// (possibly spoofed) source addresses cannot grow memory without end.
	maxSources = 10000
	// minSourceIdle is how long a source must have been quiet before its
	// limiter may be dropped to make room.
	minSourceIdle = time.Minute
	// sweepEvery spaces the scans of a full map, so a flood of new sources
	// does not make every request walk ten thousand entries under the lock.
	sweepEvery = time.Second
)

// sourceLimiter is a token bucket per source address.
type sourceLimiter struct {
	limit rate.Limit
	burst int
	idle  time.Duration
	now   func() time.Time

	mu        sync.Mutex
	sources   map[string]*source
	lastSweep time.Time
}

type source struct {
	bucket *rate.Limiter
	seen   time.Time
}

func newSourceLimiter(perSecond float64, burst int, now func() time.Time) *sourceLimiter {
	// A source idle for less than the time its bucket takes to refill would
	// get a fresh, full bucket if dropped; keep it at least that long.
	idle := minSourceIdle
	if refill := time.Duration(float64(burst) / perSecond * float64(time.Second)); refill > idle {
		idle = refill
	}
	return &sourceLimiter{
		limit:   rate.Limit(perSecond),
		burst:   burst,
		idle:    idle,
		now:     now,
		sources: make(map[string]*source),
	}
}

// allow takes a token for the request's source. When it refuses, it says how
// long until the source may try again.
func (l *sourceLimiter) allow(r *http.Request) (bool, time.Duration) {
	key := sourceKey(r.RemoteAddr)
	now := l.now()

	l.mu.Lock()
	defer l.mu.Unlock()
	s, ok := l.sources[key]
	if !ok {
		if len(l.sources) >= maxSources {
			l.sweep(now)
		}
		if len(l.sources) >= maxSources {
			// Still full of sources active within the last minute: refuse
			// new ones rather than grow, or evict a busy source and hand it
			// a fresh burst. Known sources keep being served.
			return false, l.idle
		}
		s = &source{bucket: rate.NewLimiter(l.limit, l.burst)}
		l.sources[key] = s
	}
	s.seen = now
	if s.bucket.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - s.bucket.TokensAt(now)
	return false, time.Duration(missing / float64(l.limit) * float64(time.Second))
}

// sweep drops the sources idle for long enough, at most once per sweepEvery.
func (l *sourceLimiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < sweepEvery {
		return
	}
	l.lastSweep = now
	for key, s := range l.sources {
		if now.Sub(s.seen) > l.idle {
			delete(l.sources, key)
		}
	}
}

// sourceKey is the connection's source address, never a header such as
// X-Forwarded-For that the sender chooses. IPv6 sources are grouped by /64,
// the block one host usually holds, so one host cannot take a bucket (and a
// map entry) per address it owns.
func sourceKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if ip.To4() != nil {
		return ip.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// retryAfterSeconds renders d for a Retry-After header: whole seconds, at
// least one.
func retryAfterSeconds(d time.Duration) int {
	return int(math.Max(1, math.Ceil(d.Seconds())))
}
