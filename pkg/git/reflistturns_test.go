package git

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/gitserver"
)

// fakeCommit is what refListServer's refs point at where no repository is
// fetched.
const fakeCommit = "1111111111111111111111111111111111111111"

// refList is a ref advertisement as an HTTP server starts it: main at
// commit, then pull request refs up to about size bytes, without the final
// flush.
func refList(commit string, size int) string {
	var b strings.Builder
	b.WriteString(pktLine("# service=git-upload-pack\n") + "0000")
	b.WriteString(pktLine(commit + " HEAD\x00multi_ack side-band-64k ofs-delta shallow symref=HEAD:refs/heads/main\n"))
	b.WriteString(pktLine(commit + " refs/heads/main\n"))
	for i := 0; b.Len() < size; i++ {
		b.WriteString(pktLine(fmt.Sprintf("%s refs/pull/%07d/head\n", commit, i)))
	}
	return b.String()
}

// refListServer sends size bytes of refs for any repository, then holds the
// list open until hold is closed and ends it. While it holds the list it
// sends one more ref every 50 ms if trickle is set (so that the low-speed
// check sees it alive), nothing otherwise.
func refListServer(t *testing.T, commit string, size int, hold <-chan struct{}, trickle bool) *httptest.Server {
	t.Helper()
	list := []byte(refList(commit, size))
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
		if _, err := w.Write(list); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-hold:
				_, _ = w.Write([]byte("0000"))
				return
			case <-r.Context().Done():
				return
			case <-tick.C:
				if trickle {
					_, _ = fmt.Fprint(w, pktLine(fmt.Sprintf("%s refs/pull/x%07d/head\n", commit, i)))
					w.(http.Flusher).Flush()
				}
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// waitForTransfers waits until done is true of the running transfers: those
// waiting for a turn (waiting), and those not waiting that have read at
// least n bytes (past).
func waitForTransfers(t *testing.T, n int64, done func(waiting, past int) bool) (waiting, past int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		waiting, past = 0, 0
		transfers.Range(func(_, v any) bool {
			switch tr := v.(*transfer); {
			case tr.turn.waiting.Load():
				waiting++
			case tr.read.Load() >= n:
				past++
			}
			return true
		})
		if done(waiting, past) {
			return waiting, past
		}
		if time.Now().After(deadline) {
			t.Fatalf("transfers never got there: %d waiting for a turn, %d past %s", waiting, past, formatBytes(n))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Ten namespaces' servers each send 8 MiB of refs and hold the list open:
// two lists are parsed, the other eight wait at 1 MiB, and the heap holds
// about that. Before, every listing slot parsed a list of its own: the
// same ten lists took 148 MiB of live heap (about 15 MiB per 8 MiB of
// refs mid-parse; 74 MiB per 16 MiB at the peak, after the parse).
func TestLargeRefListsAreReadTwoAtATime(t *testing.T) {
	const commit, size, tenants = fakeCommit, 8 << 20, 10
	hold := make(chan struct{})
	s := refListServer(t, commit, size, hold, false)
	c := newCache(t, Options{LowSpeedTime: -1, MaxConcurrentListings: 16, MaxConcurrentListingsPerTenant: 16})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, tenants)
	for i := range tenants {
		wg.Go(func() {
			got, err := c.Latest(ctx, Source{URL: fmt.Sprintf("%s/r%d.git", s.URL, i), Branch: "main", Tenant: fmt.Sprint("team-", i)})
			if err == nil && got != commit {
				err = fmt.Errorf("got commit %s, want %s", got, commit)
			}
			errs[i] = err
		})
	}
	waiting, past := waitForTransfers(t, size-64<<10, func(waiting, past int) bool { return waiting+past == tenants })
	var held runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&held)
	grown := int64(held.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d lists parsed, %d waiting; live heap grew by %s", past, waiting, formatBytes(grown))
	if past != maxLargeRefLists || waiting != tenants-maxLargeRefLists {
		t.Errorf("%d lists parsed at once and %d waiting, want %d and %d", past, waiting, maxLargeRefLists, tenants-maxLargeRefLists)
	}
	if grown > 64<<20 {
		t.Errorf("the live heap grew by %s with %d lists of 8 MiB held open, want under 64 MiB", formatBytes(grown), tenants)
	}

	close(hold)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("team-%d's listing, once the lists ended: %v", i, err)
		}
	}
}

// While team-a and team-b hold the turns: a small list is read at once; a
// large one, listed over HTTP or SSH or fetched, waits until its sync's time
// runs out (5 s, past the 3 s low-speed check), saying why, not that the
// server stalled (the wait pauses the check). A namespace takes one turn at most: with one free,
// team-a's second large list still waits. Once the turns are given back,
// the waiting lists are read.
func TestAListWaitingForATurnSaysWhy(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	small := commit(t, s, "small", manifests)
	large := commit(t, s, "large", manifests)
	manyRefs(t, s, "large", large, 2<<20)
	hold := make(chan struct{})
	endLists := sync.OnceFunc(func() { close(hold) })
	holding := refListServer(t, large, 2<<20, hold, true)
	// 3 s, not 1: under -race the client reads slowly enough for a 1 s
	// check to fire.
	c := newCache(t, Options{LowSpeedBytes: 1, LowSpeedTime: 3 * time.Second})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer endLists()
	for _, tenant := range []string{"team-a", "team-b"} {
		wg.Go(func() {
			if _, err := c.Latest(ctx, Source{URL: holding.URL + "/" + tenant + ".git", Branch: "main", Tenant: tenant}); err != nil {
				t.Errorf("%s's listing: %v", tenant, err)
			}
		})
	}
	waitForTransfers(t, 2<<20, func(_, past int) bool { return past == 2 })

	smallSrc := Source{URL: s.BaseURL() + "/small.git", Branch: "main", Tenant: "team-c"}
	if got, err := c.Latest(ctx, smallSrc); err != nil || got != small {
		t.Fatalf("a small list while both turns are held: %s, %v; want %s", got, err, small)
	}
	sshd := startSSHD(t)
	sshURL := sshd.URL(filepath.Join(s.Root(), "large.git"))
	httpSrc := Source{URL: s.BaseURL() + "/large.git", Branch: "main", Tenant: "team-c"}
	sshSrc := Source{URL: sshURL, Branch: "main", Tenant: "team-c", Auth: sshdAuth(t, sshd, sshURL)}
	waitingFails := func(name string, do func(context.Context) error) {
		t.Helper()
		waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := do(waitCtx)
		if Reason(err) != ReasonTimeout || !strings.Contains(fmt.Sprint(err), "timed out (spec.timeout) waiting for a turn to read a list of refs over 1 MiB") {
			t.Errorf("%s: %v (%s), want %s saying it waited for a turn", name, err, Reason(err), ReasonTimeout)
		}
	}
	waitingFails("a large list over HTTP, both turns held", func(ctx context.Context) error { _, err := c.Latest(ctx, httpSrc); return err })
	waitingFails("a large list over SSH, both turns held", func(ctx context.Context) error { _, err := c.Latest(ctx, sshSrc); return err })
	pinned := httpSrc
	pinned.Commit = large
	waitingFails("a fetch of a large list, both turns held", func(ctx context.Context) error { _, err := c.Files(ctx, pinned, large, "deploy"); return err })

	endLists()
	wg.Wait()
	a := httpSrc
	a.Tenant = "team-a"
	holdAnother := make(chan struct{})
	defer close(holdAnother)
	another := refListServer(t, large, 2<<20, holdAnother, true)
	wg.Go(func() { _, _ = c.Latest(ctx, Source{URL: another.URL + "/r.git", Branch: "main", Tenant: "team-a"}) })
	waitForTransfers(t, 2<<20, func(_, past int) bool { return past == 1 })
	waitingFails("team-a's second large list, one turn held by team-a, one free", func(ctx context.Context) error { _, err := c.Latest(ctx, a); return err })
	for name, src := range map[string]Source{"HTTP": httpSrc, "SSH": sshSrc} {
		if got, err := c.Latest(ctx, src); err != nil || got != large {
			t.Errorf("a large list over %s, a turn free: %s, %v; want %s", name, got, err, large)
		}
		c.refresh(src, time.Now())
	}
}

// A fetch keeps its turn while its pack comes, since it keeps the parsed
// list: two fetches of repositories with 2 MiB of refs, whose packs the
// server holds back, make another namespace's large list wait, until they
// pass largeRefFetchTime and fail saying so.
func TestAFetchKeepsItsTurnUntilItsPackArrives(t *testing.T) {
	defer func(was time.Duration) { largeRefFetchTime = was }(largeRefFetchTime)
	largeRefFetchTime = 6 * time.Second
	s := newServer(t, gitserver.Options{})
	large := commit(t, s, "large", manifests)
	manyRefs(t, s, "large", large, 2<<20)
	heads := map[string]string{}
	for _, repo := range []string{"team-a", "team-b"} { // a store each
		heads[repo] = commit(t, s, repo, manifests)
		manyRefs(t, s, repo, heads[repo], 2<<20)
	}
	packsHeld := make(chan struct{})
	defer close(packsHeld)
	slowPacks := proxyTo(t, s, func(w http.ResponseWriter, r *http.Request) bool {
		if isPackRequest(r) {
			select {
			case <-packsHeld:
			case <-r.Context().Done():
			}
			return true
		}
		return false
	})
	c := newCache(t, Options{MaxConcurrentFetches: 4, MaxConcurrentFetchesPerTenant: 4, LowSpeedTime: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	errs := map[string]error{}
	var mu sync.Mutex
	for _, tenant := range []string{"team-a", "team-b"} {
		wg.Go(func() {
			src := Source{URL: slowPacks.URL + "/" + tenant + ".git", Branch: "main", Tenant: tenant}
			_, err := c.Files(ctx, src, heads[tenant], "deploy")
			mu.Lock()
			defer mu.Unlock()
			errs[tenant] = err
		})
	}
	waitForTransfers(t, 2<<20, func(_, past int) bool { return past == 2 })
	src := Source{URL: s.BaseURL() + "/large.git", Branch: "main", Tenant: "team-c"}
	shortCtx, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	if _, err := c.Latest(shortCtx, src); Reason(err) != ReasonTimeout || !strings.Contains(fmt.Sprint(err), "waiting for a turn") {
		t.Errorf("a large list while two fetches wait for their packs: %v, want it waiting for a turn", err)
	}
	if got, err := c.Latest(ctx, src); err != nil || got != large {
		t.Errorf("a large list once the fetches ran out of time: %s, %v; want %s", got, err, large)
	}
	wg.Wait()
	for tenant, err := range errs {
		if Reason(err) != ReasonTimeout || !strings.Contains(fmt.Sprint(err), "the fetch holds one of the 2 turns for such lists, for at most 6s; it took longer") {
			t.Errorf("%s's fetch, its pack held back: %v (%s), want %s saying it held a turn too long", tenant, err, Reason(err), ReasonTimeout)
		}
	}
}

// A server that trickles its list above the low-speed check, or stalls with
// the check off, loses its turn after largeRefListTime, saying so; the turn
// then serves the next namespace.
func TestASlowListLosesItsTurn(t *testing.T) {
	defer func(was time.Duration) { largeRefListTime = was }(largeRefListTime)
	largeRefListTime = time.Second
	neverEnds := make(chan struct{})
	defer close(neverEnds)
	ended := make(chan struct{})
	close(ended)
	next := refListServer(t, fakeCommit, 2<<20, ended, false)
	for _, tc := range []struct {
		name         string
		trickle      bool
		lowSpeedTime time.Duration
	}{
		{"trickled above the low-speed check", true, time.Second},
		{"stalled, the low-speed check off", false, -1},
	} {
		c := newCache(t, Options{LowSpeedBytes: 1, LowSpeedTime: tc.lowSpeedTime, MaxConcurrentListings: 4})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var wg sync.WaitGroup
		for _, tenant := range []string{"team-a", "team-b"} { // both turns
			wg.Go(func() {
				start := time.Now()
				_, err := c.Latest(ctx, Source{URL: refListServer(t, fakeCommit, 2<<20, neverEnds, tc.trickle).URL + "/r.git", Branch: "main", Tenant: tenant})
				if Reason(err) != ReasonTimeout || !strings.Contains(fmt.Sprint(err), "over 1 MiB and took over 1s to arrive") {
					t.Errorf("a list %s: %v (%s) after %s, want %s saying it took too long", tc.name, err, Reason(err), time.Since(start), ReasonTimeout)
				}
			})
		}
		wg.Wait()
		if got, err := c.Latest(ctx, Source{URL: next.URL + "/r.git", Branch: "main", Tenant: "team-c"}); err != nil || got != fakeCommit {
			t.Errorf("team-c's large list after two lists %s lost their turns: %s, %v", tc.name, got, err)
		}
		cancel()
	}
}

// A listing's answer is kept for ListingTTL with its branches and tags only
// (a forge's pull request refs are most of a large list), and the answers
// kept take at most keptBytesLimit together: a listing past that is
// answered, not kept. Dropping a listing (a push's Refresh) frees its share.
func TestKeptListingsAreBounded(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	small := commit(t, s, "small", manifests)
	many := commit(t, s, "many", manifests)
	manyRefs(t, s, "many", many, 64<<10)
	ended := make(chan struct{})
	close(ended)
	pulls := refListServer(t, many, 64<<10, ended, false)
	c := newCache(t, Options{ListingTTL: time.Hour})
	kept := func() (listings, refs int) {
		c.mu.Lock()
		defer c.mu.Unlock()
		bytes := 0
		for _, l := range c.listings {
			refs += len(l.refs)
			bytes += l.bytes
		}
		if bytes != c.keptBytes {
			t.Errorf("listings of %d bytes kept, counted as %d", bytes, c.keptBytes)
		}
		return len(c.listings), refs
	}
	latest := func(url string) {
		t.Helper()
		if _, err := c.Latest(context.Background(), Source{URL: url, Branch: "main"}); err != nil {
			t.Fatal(err)
		}
	}

	latest(pulls.URL + "/r.git")
	if listings, refs := kept(); listings != 1 || refs != 1 {
		t.Errorf("after listing main and about 1,000 pull request refs: %d listings with %d refs kept, want main alone", listings, refs)
	}
	c.refresh(Source{URL: pulls.URL + "/r.git"}, time.Now())
	if listings, refs := kept(); listings != 0 || refs != 0 {
		t.Errorf("after a push's Refresh: %d listings with %d refs kept, want none", listings, refs)
	}

	c.keptBytesLimit = 10 << 10
	latest(s.BaseURL() + "/many.git")
	if listings, _ := kept(); listings != 0 {
		t.Errorf("a listing of about 1,000 tags was kept with room for 10 KiB")
	}
	latest(s.BaseURL() + "/small.git")
	if listings, refs := kept(); listings != 1 || refs != 1 {
		t.Errorf("a listing of one branch (%s) then: %d listings with %d refs kept, want it kept", small, listings, refs)
	}

	// With no room beside the small listing, which has expired, the many
	// tags are kept once it is swept, before the periodic sweep is due.
	alone := newCache(t, Options{ListingTTL: time.Hour})
	if _, err := alone.Latest(context.Background(), Source{URL: s.BaseURL() + "/many.git", Branch: "main"}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.keptBytesLimit = alone.keptBytes + c.keptBytes - 1
	c.opts.ListingTTL = 50 * time.Millisecond
	c.mu.Unlock()
	time.Sleep(100 * time.Millisecond)
	c.mu.Lock()
	c.swept = time.Now()
	c.mu.Unlock()
	latest(s.BaseURL() + "/many.git")
	if listings, refs := kept(); listings != 1 || refs < 1000 {
		t.Errorf("the many tags, the expired listing taking their room: %d listings with %d refs kept, want the tags alone", listings, refs)
	}
}

// A sync that times out waiting for a listing or fetch slot names it.
func TestATimeoutNamesTheSlotItWaitedFor(t *testing.T) {
	neverEnds := make(chan struct{})
	defer close(neverEnds)
	stalled := refListServer(t, fakeCommit, 1<<10, neverEnds, false)
	c := newCache(t, Options{LowSpeedTime: -1, MaxConcurrentListings: 1, MaxConcurrentFetches: 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { _, _ = c.Latest(ctx, Source{URL: stalled.URL + "/held.git", Branch: "main"}) })
	wg.Go(func() {
		_, _ = c.Files(ctx, Source{URL: stalled.URL + "/held.git", Commit: fakeCommit}, fakeCommit, "deploy")
	})
	waitForTransfers(t, 1<<10, func(_, past int) bool { return past == 2 })

	for what, do := range map[string]func(context.Context) error{
		"a listing slot (--max-concurrent-listings, --max-concurrent-listings-per-namespace)": func(ctx context.Context) error {
			_, err := c.Latest(ctx, Source{URL: stalled.URL + "/other.git", Branch: "main"})
			return err
		},
		"a fetch slot (--max-concurrent-fetches, --max-concurrent-fetches-per-namespace)": func(ctx context.Context) error {
			_, err := c.Files(ctx, Source{URL: stalled.URL + "/other.git", Commit: fakeCommit}, fakeCommit, "deploy")
			return err
		},
	} {
		waitCtx, cancelWait := context.WithTimeout(ctx, 500*time.Millisecond)
		err := do(waitCtx)
		cancelWait()
		if Reason(err) != ReasonTimeout || !strings.Contains(fmt.Sprint(err), "timed out (spec.timeout) waiting for "+what) {
			t.Errorf("waiting behind a stalled server: %v (%s), want %s naming %s", err, Reason(err), ReasonTimeout, what)
		}
	}
}

// A fetch holds its store's lock while it waits for a turn or a pack; another
// tenant's read of the same URL, whose commit is stored already, still ends
// on its own deadline, naming the wait (attacker review: it waited for the
// fetch, 40 s against its 10 s).
func TestAReadWaitingForABusyStoreEndsOnItsDeadline(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	stored := commit(t, s, "app", manifests)
	var holdPacks atomic.Bool
	packsHeld := make(chan struct{})
	defer close(packsHeld)
	proxy := proxyTo(t, s, func(w http.ResponseWriter, r *http.Request) bool {
		if holdPacks.Load() && isPackRequest(r) {
			select {
			case <-packsHeld:
			case <-r.Context().Done():
			}
			return true
		}
		return false
	})
	c := newCache(t, Options{LowSpeedTime: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := Source{URL: proxy.URL + "/app.git", Branch: "main", Tenant: "team-b"}
	if _, err := c.Files(ctx, b, stored, "deploy"); err != nil {
		t.Fatal(err)
	}

	holdPacks.Store(true)
	newer := commit(t, s, "app", map[string]gitserver.File{"deploy/x.yaml": {Content: "a: 1\n"}})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { _, _ = c.Files(ctx, Source{URL: b.URL, Branch: "main", Tenant: "team-a"}, newer, "deploy") })
	waitForTransfers(t, 1, func(_, past int) bool { return past == 1 }) // its store locked

	readCtx, cancelRead := context.WithTimeout(ctx, time.Second)
	defer cancelRead()
	start := time.Now()
	_, err := c.Files(readCtx, b, stored, "deploy")
	if took := time.Since(start); took > 5*time.Second || Reason(err) != ReasonTimeout || !strings.Contains(fmt.Sprint(err), "waiting for the git cache of") {
		t.Errorf("a read of a stored commit while another tenant's fetch holds the store: %v after %s, want a timeout naming the wait within its 1 s", err, took)
	}
}
