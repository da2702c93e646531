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
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/gitserver"
)

// refList is a ref advertisement as an HTTP server starts it: main at
// commit, then short refs up to about size bytes, without the final flush.
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

// largeRefListServer sends size bytes of refs for any repository, then
// holds the list open until finish is closed (sending one more ref every
// 50 ms if trickle, so that the low-speed check sees it alive), and ends it.
func largeRefListServer(t *testing.T, commit string, size int, finish <-chan struct{}, trickle bool) *httptest.Server {
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
			case <-finish:
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

// transfersReading counts the transfers running: those waiting for a turn,
// and those that have read at least n bytes.
func transfersReading(n int64) (waiting, past int) {
	transfers.Range(func(_, v any) bool {
		switch tr := v.(*transfer); {
		case tr.turn.waiting.Load():
			waiting++
		case tr.read.Load() >= n:
			past++
		}
		return true
	})
	return waiting, past
}

// Ten tenants' servers each send 8 MiB of refs and hold the list open:
// two lists are parsed, the other eight wait at 1 MiB, and the heap holds
// about that. Before, every listing slot parsed a list of its own (about
// 14 MiB of live heap per 8 MiB of short refs), so the 8 listing and 4
// fetch slots let hostile servers hold about 900 MiB.
func TestLargeRefListsAreReadAFewAtATime(t *testing.T) {
	const commit, size, tenants = "1111111111111111111111111111111111111111", 8 << 20, 10
	finish := make(chan struct{})
	s := largeRefListServer(t, commit, size, finish, false)
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
	var waiting, past int
	for waiting+past < tenants && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		waiting, past = transfersReading(size - 64<<10)
	}
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

	close(finish)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("team-%d's listing, once the lists ended: %v", i, err)
		}
	}
}

// While both turns are held, a small list is read at once, and a large one
// waits, over HTTP and SSH, until its sync's time runs out, saying why, not
// that the server stalled (the wait pauses the low-speed check). Once the
// turns are given back, it is read.
func TestAListWaitingForATurnSaysWhy(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	small := commit(t, s, "small", manifests)
	large := commit(t, s, "large", manifests)
	manyRefs(t, s, "large", large, 2<<20)
	finish := make(chan struct{})
	endLists := sync.OnceFunc(func() { close(finish) })
	holding := largeRefListServer(t, large, 2<<20, finish, true)
	c := newCache(t, Options{LowSpeedBytes: 1, LowSpeedTime: time.Second})

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
	for _, past := transfersReading(2 << 20); past < maxLargeRefLists && ctx.Err() == nil; _, past = transfersReading(2 << 20) {
		time.Sleep(20 * time.Millisecond)
	}

	smallSrc := Source{URL: s.BaseURL() + "/small.git", Branch: "main", Tenant: "team-c"}
	if got, err := c.Latest(ctx, smallSrc); err != nil || got != small {
		t.Fatalf("a small list while both turns are held: %s, %v; want %s", got, err, small)
	}
	sshd := startSSHD(t)
	sshURL := sshd.URL(filepath.Join(s.Root(), "large.git"))
	waiters := map[string]Source{
		"http": {URL: s.BaseURL() + "/large.git", Branch: "main", Tenant: "team-c"},
		"ssh":  {URL: sshURL, Branch: "main", Tenant: "team-c", Auth: sshdAuth(t, sshd, sshURL)},
	}
	for name, src := range waiters {
		waitCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := c.Latest(waitCtx, src)
		cancel()
		if Reason(err) != ReasonTimeout || !strings.Contains(fmt.Sprint(err), "timed out (spec.timeout) waiting for a turn to read a list of refs over 1 MiB") {
			t.Errorf("a large list over %s while both turns are held: %v (%s), want %s saying it waited for a turn", name, err, Reason(err), ReasonTimeout)
		}
	}

	endLists()
	wg.Wait()
	for name, src := range waiters {
		if got, err := c.Latest(ctx, src); err != nil || got != large {
			t.Errorf("a large list over %s once the turns were given back: %s, %v; want %s", name, got, err, large)
		}
	}
}

// A listing's answer is kept for ListingTTL with its branches and tags only
// (a forge's pull request refs are most of a large list), and the answers
// kept hold at most maxKeptRefs refs together: a listing past that is
// answered, not kept. Forgetting a listing frees its share.
func TestKeptListingsAreBounded(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	small := commit(t, s, "small", manifests)
	many := commit(t, s, "many", manifests)
	manyRefs(t, s, "many", many, 64<<10)
	finish := make(chan struct{})
	close(finish)
	pulls := largeRefListServer(t, many, 64<<10, finish, false)
	c := newCache(t, Options{ListingTTL: time.Hour})
	kept := func() (listings, refs int) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, l := range c.listings {
			refs += len(l.refs)
		}
		if refs != c.keptRefs {
			t.Errorf("%d refs kept, counted as %d", refs, c.keptRefs)
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
	c.Forget(Source{URL: pulls.URL + "/r.git"})
	if listings, refs := kept(); listings != 0 || refs != 0 {
		t.Errorf("after Forget: %d listings with %d refs kept, want none", listings, refs)
	}

	c.maxKeptRefs = 100
	latest(s.BaseURL() + "/many.git")
	if listings, _ := kept(); listings != 0 {
		t.Errorf("a listing of about 1,000 tags was kept with room for 100 refs")
	}
	latest(s.BaseURL() + "/small.git")
	if listings, refs := kept(); listings != 1 || refs != 1 {
		t.Errorf("a listing of one branch (%s) then: %d listings with %d refs kept, want it kept", small, listings, refs)
	}
}

// A turn is held only while its list arrives: two fetches of a repository
// with 2 MiB of refs, whose packs the server holds back, leave both turns
// free for another namespace's large list. And a server that trickles its
// list above the low-speed check loses its turn after largeRefListTime,
// saying so.
func TestATurnIsHeldOnlyWhileTheListArrives(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	large := commit(t, s, "large", manifests)
	manyRefs(t, s, "large", large, 2<<20)
	heads := map[string]string{}
	for _, repo := range []string{"team-a", "team-b"} { // a store each
		heads[repo] = commit(t, s, repo, manifests)
		manyRefs(t, s, repo, heads[repo], 2<<20)
	}
	packsHeld := make(chan struct{})
	endPacks := sync.OnceFunc(func() { close(packsHeld) })
	defer endPacks()
	slowPacks := proxyTo(t, s, func(w http.ResponseWriter, r *http.Request) bool {
		if isPackRequest(r) {
			<-packsHeld
			return true
		}
		return false
	})
	c := newCache(t, Options{MaxConcurrentFetches: 4, MaxConcurrentFetchesPerTenant: 4, LowSpeedTime: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, tenant := range []string{"team-a", "team-b"} {
		wg.Go(func() {
			// The held-back pack ends the fetch without one, as a failure.
			src := Source{URL: slowPacks.URL + "/" + tenant + ".git", Branch: "main", Tenant: tenant}
			_, _ = c.Files(ctx, src, heads[tenant], "deploy")
		})
	}
	for _, past := transfersReading(2 << 20); past < 2; _, past = transfersReading(2 << 20) {
		if ctx.Err() != nil {
			t.Fatal("the two fetches never read their lists")
		}
		time.Sleep(20 * time.Millisecond)
	}
	listCtx, cancelList := context.WithTimeout(ctx, 10*time.Second)
	got, err := c.Latest(listCtx, Source{URL: s.BaseURL() + "/large.git", Branch: "main", Tenant: "team-c"})
	cancelList()
	if err != nil || got != large {
		t.Errorf("a large list while two fetches wait for their packs: %s, %v; want %s", got, err, large)
	}
	endPacks()
	wg.Wait()

	defer func(was time.Duration) { largeRefListTime = was }(largeRefListTime)
	largeRefListTime = time.Second
	neverEnds := make(chan struct{})
	defer close(neverEnds)
	trickling := largeRefListServer(t, large, 2<<20, neverEnds, true)
	c = newCache(t, Options{LowSpeedBytes: 1, LowSpeedTime: time.Second})
	start := time.Now()
	_, err = c.Latest(ctx, Source{URL: trickling.URL + "/r.git", Branch: "main", Tenant: "team-a"})
	if Reason(err) != ReasonTimeout || !strings.Contains(fmt.Sprint(err), "over 1 MiB and took over 1s to arrive") {
		t.Errorf("a list trickled for ever: %v (%s) after %s, want %s saying it took too long", err, Reason(err), time.Since(start), ReasonTimeout)
	}
}
