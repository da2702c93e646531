package git

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	mathrand "math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"golang.org/x/crypto/ssh"

	"github.com/falsesystems/alumiini/test/gitserver"
)

// allocated runs f and returns the bytes the process allocated meanwhile:
// a body read into memory shows here however soon it is freed.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// endless writes chunk until the client goes away.
func endless(w http.ResponseWriter, chunk []byte) {
	for {
		if _, err := w.Write(chunk); err != nil {
			return
		}
		w.(http.Flusher).Flush()
	}
}

// pktLine frames data as one pkt-line of the git protocol.
func pktLine(data string) string { return fmt.Sprintf("%04x%s", len(data)+4, data) }

// proxyTo serves the git server s through handle: handle returns true when
// it answered the request itself.
func proxyTo(t *testing.T, s *gitserver.Server, handle func(w http.ResponseWriter, r *http.Request) bool) *httptest.Server {
	t.Helper()
	target, err := url.Parse(s.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !handle(w, r) {
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

// isPackRequest reports whether r asks for a pack. It reads the request
// body, so that the server notices when the client goes away.
func isPackRequest(r *http.Request) bool {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/git-upload-pack") {
		return false
	}
	_, _ = io.Copy(io.Discard, r.Body)
	return true
}

func TestHTTPResponseBodiesAreBounded(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "app", manifests)
	errorBody := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		endless(w, []byte(strings.Repeat("oops ", 8192)))
	}))
	defer errorBody.Close()
	refs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
		fmt.Fprint(w, pktLine("# service=git-upload-pack\n")+"0000")
		fmt.Fprint(w, pktLine(strings.Repeat("1", 40)+" HEAD\x00side-band-64k\n"))
		var chunk strings.Builder
		for i := 0; i < 512; i++ {
			chunk.WriteString(pktLine(fmt.Sprintf("%040x refs/heads/branch-%d\n", i, i)))
		}
		endless(w, []byte(chunk.String()))
	}))
	defer refs.Close()
	// A pack response that never ends: progress messages on side band 2,
	// which go-git reads and drops, waiting forever for pack data.
	pack := proxyTo(t, s, func(w http.ResponseWriter, r *http.Request) bool {
		if !isPackRequest(r) {
			return false
		}
		w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
		fmt.Fprint(w, "0000"+pktLine("NAK\n"))
		endless(w, []byte(strings.Repeat(pktLine("\x02Counting objects: 1%\r"), 1024)))
		return true
	})

	cases := []struct {
		name     string
		url      string
		maxFetch int64
		says     string
		budget   uint64
	}{
		{name: "endless error body", url: errorBody.URL + "/r.git", says: "64 KiB", budget: 32 << 20},
		{name: "endless ref advertisement", url: refs.URL + "/r.git", says: "16 MiB", budget: 256 << 20},
		{name: "endless pack", url: pack.URL + "/app.git", maxFetch: 4 << 20, says: "4 MiB", budget: 64 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t, Options{MaxFetchBytes: tc.maxFetch})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var err error
			used := allocated(func() {
				_, err = syncOnce(ctx, c, Source{URL: tc.url, Branch: "main"}, "deploy")
			})
			if Reason(err) != ReasonLimitExceeded || !strings.Contains(fmt.Sprint(err), tc.says) {
				t.Fatalf("got %v (%s), want %s naming the limit of %s", err, Reason(err), ReasonLimitExceeded, tc.says)
			}
			if used > tc.budget {
				t.Errorf("reading the response allocated %d MiB, want under %d MiB", used>>20, tc.budget>>20)
			}
		})
	}
}

// bigRepository commits files of random (incompressible) data, size bytes
// in all, to branch main of repo.
func bigRepository(t *testing.T, s *gitserver.Server, repo string, size int) {
	t.Helper()
	rng := mathrand.New(mathrand.NewSource(1))
	files := map[string]gitserver.File{}
	chunk := make([]byte, 64<<10)
	for i := 0; i*len(chunk) < size; i++ {
		rng.Read(chunk)
		files[fmt.Sprintf("deploy/f%03d.txt", i)] = gitserver.File{Content: hex.EncodeToString(chunk[:len(chunk)/2])}
	}
	commit(t, s, repo, files)
}

// tempPacks lists what a fetch left half-written under the cache.
func tempPacks(t *testing.T, dir string) []string {
	t.Helper()
	found, err := filepath.Glob(filepath.Join(dir, "*", "objects", "pack", "tmp_*"))
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func TestFetchStopsAtTheByteLimit(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	bigRepository(t, s, "big", 2<<20)
	small, err := s.Commit(context.Background(), "big", "small", map[string]gitserver.File{"deploy/a.yaml": {Content: "kind: ConfigMap\n"}})
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, url string, auth *Auth) {
		dir := t.TempDir()
		c := newCache(t, Options{Dir: dir, MaxFetchBytes: 256 << 10})
		_, err := syncOnce(context.Background(), c, Source{URL: url, Branch: "main", Auth: auth}, "deploy")
		if Reason(err) != ReasonLimitExceeded || !strings.Contains(err.Error(), "limit of 256 KiB") {
			t.Fatalf("a 2 MiB fetch past a 256 KiB limit: got %v (%s), want %s naming the limit", err, Reason(err), ReasonLimitExceeded)
		}
		if left := tempPacks(t, dir); len(left) > 0 {
			t.Errorf("the stopped fetch left %v behind", left)
		}
		// The store is still good for what fits.
		tree, err := syncOnce(context.Background(), c, Source{URL: url, Branch: "small", Auth: auth}, "deploy")
		if err != nil || tree.Commit != small {
			t.Fatalf("a small branch of the same repository afterwards: %v", err)
		}
	}
	t.Run("http", func(t *testing.T) { check(t, s.BaseURL()+"/big.git", nil) })
	t.Run("ssh", func(t *testing.T) {
		sshd := startSSHD(t)
		url := sshd.URL(filepath.Join(s.Root(), "big.git"))
		check(t, url, sshdAuth(t, sshd, url))
	})
}

func startSSHD(t *testing.T) *gitserver.SSHD {
	t.Helper()
	sshd, err := gitserver.StartSSHD(context.Background(), t.TempDir())
	if errors.Is(err, gitserver.ErrNoSSHD) {
		t.Skipf("SKIPPED LOUDLY: no sshd and apt-get cannot install it here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sshd.Close)
	return sshd
}

// sshdAuth is the Auth of sshd's client key; sources of an SSHD need it.
func sshdAuth(t *testing.T, sshd *gitserver.SSHD, url string) *Auth {
	t.Helper()
	auth, err := AuthFromSecret("ssh-creds", url, map[string][]byte{KeyIdentity: sshd.ClientKey, KeyKnownHosts: sshd.KnownHosts})
	if err != nil {
		t.Fatal(err)
	}
	return auth
}

func TestStalledServerIsCutOff(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "app", manifests)
	var packRequests atomic.Int32
	stallPack := proxyTo(t, s, func(w http.ResponseWriter, r *http.Request) bool {
		if !isPackRequest(r) {
			return false
		}
		packRequests.Add(1)
		w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
		fmt.Fprint(w, "0000")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return true
	})
	stallRefs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
		fmt.Fprint(w, pktLine("# service=git-upload-pack\n"))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer stallRefs.Close()
	silentSSH := silentListener(t)

	cases := []struct {
		name  string
		url   string
		doing string
	}{
		{name: "listing over HTTP", url: stallRefs.URL + "/app.git", doing: "listing refs"},
		{name: "fetch over HTTP", url: stallPack.URL + "/app.git", doing: "fetching"},
		{name: "SSH server that never answers", url: "ssh://git@" + silentSSH + "/app.git", doing: "listing refs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t, Options{LowSpeedBytes: 1024, LowSpeedTime: 300 * time.Millisecond})
			// spec.timeout is long: the stall, not the timeout, must end it.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			start := time.Now()
			_, err := syncOnce(ctx, c, Source{URL: tc.url, Branch: "main", Auth: fakeSSHAuth(t, tc.url)}, "deploy")
			if Reason(err) != ReasonTimeout || !strings.Contains(fmt.Sprint(err), "stalled") || !strings.HasPrefix(fmt.Sprint(err), tc.doing) {
				t.Fatalf("got %v (%s), want %s: %s ...: the server stalled", err, Reason(err), ReasonTimeout, tc.doing)
			}
			if elapsed := time.Since(start); elapsed > 30*time.Second {
				t.Errorf("a 300ms low-speed time took %s", elapsed)
			}
		})
	}
	if n := packRequests.Load(); n != 1 {
		t.Errorf("the stalled fetch was tried %d times; a stall must not be retried", n)
	}
}

func TestHungSSHServerCostsAtMostTheTimeout(t *testing.T) {
	url := "ssh://git@" + silentListener(t) + "/r.git"
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	// With the low-speed check off, spec.timeout alone must end the SSH
	// handshake, which go-git runs without a context.
	_, err := newCache(t, Options{LowSpeedTime: -1}).Latest(ctx, Source{URL: url, Branch: "main", Auth: fakeSSHAuth(t, url)})
	if Reason(err) != ReasonTimeout {
		t.Errorf("a hung SSH server: got %v (%s), want a timeout", err, Reason(err))
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("a 1s timeout took %s", elapsed)
	}
}

func TestSSHConnectionErrorsThroughTheMeter(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "ssh://git@" + l.Addr().String() + "/r.git"
	l.Close() // a port nothing listens on: the server is down
	_, err = syncOnce(context.Background(), newCache(t, Options{}), Source{URL: url, Branch: "main", Auth: fakeSSHAuth(t, url)}, "deploy")
	if Reason(err) != ReasonHostUnreachable {
		t.Errorf("an SSH server that is down: got %v (%s), want %s", err, Reason(err), ReasonHostUnreachable)
	}
}

// silentListener accepts connections on loopback and never says a word, as a
// hung SSH server does; it returns host:port.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	return l.Addr().String()
}

// fakeSSHAuth is a valid key and known_hosts entry for an ssh:// url (no
// server accepts them), nil for other URLs.
func fakeSSHAuth(t *testing.T, rawURL string) *Auth {
	t.Helper()
	if !isSSH(rawURL) {
		return nil
	}
	hostPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(hostPub)
	if err != nil {
		t.Fatal(err)
	}
	return sshAuthTrusting(t, rawURL, sshPub)
}

// sshAuthTrusting is a new client key and a known_hosts entry trusting
// hostKey for an ssh:// url.
func sshAuthTrusting(t *testing.T, rawURL string, hostKey ssh.PublicKey) *Auth {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(rawURL)
	knownHosts := fmt.Sprintf("[%s]:%s %s", u.Hostname(), u.Port(), ssh.MarshalAuthorizedKey(hostKey))
	auth, err := AuthFromSecret("ssh-creds", rawURL, map[string][]byte{KeyIdentity: pem.EncodeToMemory(block), KeyKnownHosts: []byte(knownHosts)})
	if err != nil {
		t.Fatal(err)
	}
	return auth
}

func TestOneTenantCannotTakeEveryFetchSlot(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	for _, repo := range []string{"a1", "a2", "b"} {
		commit(t, s, repo, manifests)
	}
	var stalled atomic.Int32
	slow := proxyTo(t, s, func(w http.ResponseWriter, r *http.Request) bool {
		if !isPackRequest(r) {
			return false
		}
		stalled.Add(1)
		<-r.Context().Done()
		return true
	})
	c := newCache(t, Options{MaxConcurrentFetches: 2, MaxConcurrentFetchesPerTenant: 1, LowSpeedTime: -1})

	// Tenant a's two repositories sit on a server that never sends a pack.
	ctxA, cancelA := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, repo := range []string{"a1", "a2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = syncOnce(ctxA, c, Source{URL: slow.URL + "/" + repo + ".git", Branch: "main", Tenant: "a"}, "deploy")
		}()
	}
	defer func() { cancelA(); wg.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for stalled.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if stalled.Load() == 0 {
		t.Fatal("tenant a's fetch never reached the server")
	}

	// Tenant b still gets a slot and its fetch completes.
	ctxB, cancelB := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelB()
	if _, err := syncOnce(ctxB, c, Source{URL: s.BaseURL() + "/b.git", Branch: "main", Tenant: "b"}, "deploy"); err != nil {
		t.Fatalf("tenant b while tenant a's server stalls: %v", err)
	}
	if n := stalled.Load(); n != 1 {
		t.Errorf("tenant a held %d fetch slots at once, want at most 1", n)
	}
}

// TestOneTenantCannotTakeEveryListingSlot: a tenant whose server never
// answers a ref listing holds at most half of the listing slots (each
// listing may hold 16 MiB of refs); another tenant's listings still run,
// even of a URL the first tenant is waiting to list, and the tenant's slots
// are free again once its callers give up.
func TestOneTenantCannotTakeEveryListingSlot(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	for _, repo := range []string{"a1", "a2", "a3", "a4", "b", "shared"} {
		commit(t, s, repo, manifests)
	}
	var stalled, most atomic.Int32
	proxy := proxyTo(t, s, func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/info/refs") || !strings.HasPrefix(r.URL.Path, "/a") {
			return false // only a1-a4 stall
		}
		n := stalled.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-r.Context().Done()
		stalled.Add(-1)
		return true
	})
	c := newCache(t, Options{MaxConcurrentListings: 4, LowSpeedTime: -1})
	listing := func(ctx context.Context, repo, tenant string) error {
		_, err := c.Latest(ctx, Source{URL: proxy.URL + "/" + repo + ".git", Branch: "main", Tenant: tenant})
		return err
	}

	// Tenant a: four listings its server never answers, then one of a URL
	// that answers, queued behind them.
	ctxA, cancelA := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, repo := range []string{"a1", "a2", "a3", "a4", "shared"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = listing(ctxA, repo, "a")
		}()
		time.Sleep(20 * time.Millisecond) // in this order
	}
	defer func() { cancelA(); wg.Wait() }()
	waitFor := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for stalled.Load() != want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := stalled.Load(); got != want {
			t.Fatalf("%d of tenant a's listings at its server, want %d", got, want)
		}
	}
	waitFor(2)
	time.Sleep(200 * time.Millisecond) // a third would have reached the server by now

	// Tenant b lists its own URL, and the one a waits to list, at once.
	for _, repo := range []string{"b", "shared"} {
		ctxB, cancelB := context.WithTimeout(context.Background(), 10*time.Second)
		err := listing(ctxB, repo, "b")
		cancelB()
		if err != nil {
			t.Fatalf("tenant b's listing of %s while tenant a's server stalls: %v", repo, err)
		}
	}
	if got := most.Load(); got != 2 {
		t.Errorf("tenant a held %d listing slots at once, want 2 (half of 4)", got)
	}

	// Once a's callers give up, its slots are free again.
	cancelA()
	wg.Wait()
	waitFor(0)
	ctxA2, cancelA2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelA2()
	if err := listing(ctxA2, "shared", "a"); err != nil {
		t.Fatalf("tenant a's listing once its stalled ones ended: %v", err)
	}
}

// Pushes to many URLs, one each, are not remembered for ever: every URL
// pushed to once kept an entry before.
func TestRefreshesAreForgotten(t *testing.T) {
	c := newCache(t, Options{})
	long := time.Now().Add(-refreshLife - time.Minute)
	for i := range 1000 {
		c.refresh(Source{URL: fmt.Sprintf("https://git.example.com/r%d.git", i)}, long)
	}
	other := Source{URL: "https://git.example.com/other.git"}
	c.mu.Lock()
	c.refreshesSwept = time.Time{} // a minute has passed
	c.mu.Unlock()
	c.refresh(other, time.Now())
	if _, kept := c.refreshes[other.key()]; len(c.refreshes) != 1 || !kept {
		t.Errorf("%d refreshes remembered after 1,000 pushes past refreshLife and one now, want only the one now", len(c.refreshes))
	}
}

// TestListingsAreNotKeptPastTheirTTL: a listing's answer (up to 16 MiB of
// refs) is dropped once nothing may read it, so the cache does not grow with
// every URL ever listed.
func TestListingsAreNotKeptPastTheirTTL(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	c := newCache(t, Options{ListingTTL: 50 * time.Millisecond})
	for _, repo := range []string{"r1", "r2", "r3"} {
		commit(t, s, repo, manifests)
		if _, err := c.Latest(context.Background(), Source{URL: s.BaseURL() + "/" + repo + ".git", Branch: "main"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond)
	}
	c.mu.Lock()
	kept := len(c.listings)
	c.mu.Unlock()
	if kept != 1 {
		t.Errorf("%d listings kept after listing 3 URLs one TTL apart, want only the last", kept)
	}
}

func TestPinnedCommitFallbackIsBounded(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "small", manifests)
	bigRepository(t, s, "big", 2<<20)
	missing := strings.Repeat("ab", 20)
	cases := []struct {
		name   string
		repo   string
		reason string
		says   string
	}{
		// The server refuses the hash; the branches' history fits the limit
		// and lacks it.
		{name: "unknown commit", repo: "small", reason: ReasonRefNotFound, says: "commit " + missing + " not found"},
		// The history the fallback would take is over the limit: stopped.
		{name: "unknown commit in a large history", repo: "big", reason: ReasonLimitExceeded, says: "limit of 512 KiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := newCache(t, Options{Dir: dir, MaxFetchBytes: 512 << 10})
			_, err := c.Files(context.Background(), Source{URL: s.BaseURL() + "/" + tc.repo + ".git", Commit: missing}, missing, "deploy")
			if Reason(err) != tc.reason || !strings.Contains(fmt.Sprint(err), tc.says) {
				t.Fatalf("got %v (%s), want %s saying %q", err, Reason(err), tc.reason, tc.says)
			}
			if size := c.Size(); size > 1<<20 {
				t.Errorf("the store grew to %d bytes past a 512 KiB fetch limit", size)
			}
		})
	}
	// git over HTTP serves any commit reachable from a ref: one shallow
	// fetch, no fallback.
	t.Run("older commit over http", func(t *testing.T) {
		first := commit(t, s, "older", manifests)
		commit(t, s, "older", map[string]gitserver.File{"deploy/later.yaml": {Content: "x"}})
		tree, err := syncOnce(context.Background(), newCache(t, Options{}), Source{URL: s.BaseURL() + "/older.git", Commit: first}, "deploy")
		if err != nil || tree.Commit != first || len(tree.Files) != 2 {
			t.Fatalf("a pinned older commit over HTTP: %v", err)
		}
		if got := s.Requests("older.git"); got.Fetches != 1 {
			t.Errorf("a pinned commit over HTTP took %d fetches, want one shallow fetch", got.Fetches)
		}
	})
	// git over SSH serves no commit by hash unless configured to: the
	// fallback is what makes a pinned older commit work there.
	t.Run("older commit over ssh", func(t *testing.T) {
		sshd := startSSHD(t)
		first := commit(t, s, "pinned", manifests)
		commit(t, s, "pinned", map[string]gitserver.File{"deploy/later.yaml": {Content: "x"}})
		url := sshd.URL(filepath.Join(s.Root(), "pinned.git"))
		tree, err := syncOnce(context.Background(), newCache(t, Options{}), Source{URL: url, Commit: first, Auth: sshdAuth(t, sshd, url)}, "deploy")
		if err != nil || tree.Commit != first || len(tree.Files) != 2 {
			t.Fatalf("a pinned older commit over SSH: %v", err)
		}
	})
}

// writeTree stores a tree of entries (sorted by name) and returns its hash.
func writeTree(t *testing.T, st storer.EncodedObjectStorer, entries []object.TreeEntry) plumbing.Hash {
	t.Helper()
	obj := st.NewEncodedObject()
	if err := (&object.Tree{Entries: entries}).Encode(obj); err != nil {
		t.Fatal(err)
	}
	hash, err := st.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	return hash
}

// treeBombRepository makes the bare repository name.git on branch main: under
// bomb/, width entries per level, all naming one subtree, levels deep, ending
// in empty directories (width^levels paths, no file); under ok/, one file.
func treeBombRepository(t *testing.T, root, name string, width, levels int) {
	t.Helper()
	repo, err := gogit.PlainInit(filepath.Join(root, name+".git"), true)
	if err != nil {
		t.Fatal(err)
	}
	st := repo.Storer
	level := writeTree(t, st, nil)
	for i := 0; i < levels; i++ {
		entries := make([]object.TreeEntry, width)
		for j := range entries {
			entries[j] = object.TreeEntry{Name: fmt.Sprintf("d%03d", j), Mode: filemode.Dir, Hash: level}
		}
		level = writeTree(t, st, entries)
	}
	blob := st.NewEncodedObject()
	blob.SetType(plumbing.BlobObject)
	w, _ := blob.Writer()
	_, _ = w.Write([]byte("kind: ConfigMap\n"))
	_ = w.Close()
	blobHash, err := st.SetEncodedObject(blob)
	if err != nil {
		t.Fatal(err)
	}
	ok := writeTree(t, st, []object.TreeEntry{{Name: "cm.yaml", Mode: filemode.Regular, Hash: blobHash}})
	rootTree := writeTree(t, st, []object.TreeEntry{{Name: "bomb", Mode: filemode.Dir, Hash: level}, {Name: "ok", Mode: filemode.Dir, Hash: ok}})
	sig := object.Signature{Name: "alumiini", Email: "dev@alumiini.invalid", When: time.Unix(1700000000, 0)}
	c := &object.Commit{Author: sig, Committer: sig, Message: "tree bomb\n", TreeHash: rootTree}
	obj := st.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		t.Fatal(err)
	}
	commitHash, err := st.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetReference(plumbing.NewHashReference("refs/heads/main", commitHash)); err != nil {
		t.Fatal(err)
	}
	if err := st.SetReference(plumbing.NewSymbolicReference(plumbing.HEAD, "refs/heads/main")); err != nil {
		t.Fatal(err)
	}
}

func TestTreeBombIsRefused(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	treeBombRepository(t, s.Root(), "bomb", 64, 6)
	src := Source{URL: s.BaseURL() + "/bomb.git", Branch: "main"}
	ctx := context.Background()
	c := newCache(t, Options{})
	sha, err := c.Latest(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Files(ctx, src, sha, "ok"); err != nil {
		t.Fatalf("the harmless path of the repository: %v", err)
	}

	// The bomb is refused at the entry limit, and the store it holds is
	// free again soon for another caller on the same URL.
	start := time.Now()
	bombDone := make(chan error, 1)
	go func() {
		_, err := c.Files(ctx, src, sha, "bomb")
		bombDone <- err
	}()
	time.Sleep(10 * time.Millisecond)
	tree, err := c.Files(ctx, src, sha, "ok/")
	if err != nil || len(tree.Files) != 1 {
		t.Fatalf("another path on the same URL while the bomb is read: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Errorf("another caller on the same URL waited %s", elapsed)
	}
	err = <-bombDone
	if Reason(err) != ReasonLimitExceeded || !strings.Contains(fmt.Sprint(err), fmt.Sprintf("limit of %d entries", DefaultMaxEntries)) {
		t.Fatalf("64^6 empty directories: got %v (%s), want %s naming the entry limit", err, Reason(err), ReasonLimitExceeded)
	}
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Errorf("refusing the bomb took %s", elapsed)
	}

	// Without the entry limit, the caller's timeout still ends the walk.
	unlimited := newCache(t, Options{Limits: Limits{MaxEntries: 1 << 40}})
	if _, err := unlimited.Files(ctx, src, sha, "ok"); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = unlimited.Files(short, src, sha, "bomb")
	if Reason(err) != ReasonTimeout {
		t.Errorf("the bomb under a 300ms timeout: got %v (%s), want %s", err, Reason(err), ReasonTimeout)
	}
	if elapsed := time.Since(start); elapsed > 30*time.Second {
		t.Errorf("a 300ms timeout took %s", elapsed)
	}
}

func TestHugeCommitIsRefused(t *testing.T) {
	repo, err := gogit.PlainInit(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	sig := object.Signature{Name: "alumiini", Email: "dev@alumiini.invalid", When: time.Unix(1700000000, 0)}
	c := &object.Commit{Author: sig, Committer: sig, Message: strings.Repeat("x", 2<<20), TreeHash: writeTree(t, repo.Storer, nil)}
	obj := repo.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		t.Fatal(err)
	}
	hash, err := repo.Storer.SetEncodedObject(obj)
	if err != nil {
		t.Fatal(err)
	}
	_, err = readTree(context.Background(), repo, hash, "", Limits{}.withDefaults())
	if Reason(err) != ReasonLimitExceeded || !strings.Contains(fmt.Sprint(err), "over the limit of 1 MiB for one commit") {
		t.Errorf("a commit with a 2 MiB message: got %v (%s), want %s", err, Reason(err), ReasonLimitExceeded)
	}
}

func TestCredentialsNeverGoOverPlainHTTP(t *testing.T) {
	var sawAuth atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			sawAuth.Add(1)
		}
		http.NotFound(w, r)
	}))
	defer srv.Close()
	url := srv.URL + "/r.git"
	for _, data := range []map[string][]byte{
		{KeyUsername: []byte("alice"), KeyPassword: []byte("hunter2")},
		{KeyBearerToken: []byte("hunter2")},
	} {
		_, err := AuthFromSecret("creds", url, data)
		if Reason(err) != ReasonInvalidCredentials || !strings.Contains(fmt.Sprint(err), "https://") || strings.Contains(fmt.Sprint(err), "hunter2") {
			t.Errorf("secret %v for an http:// URL: got %v (%s), want %s telling to use https://", keys(data), err, Reason(err), ReasonInvalidCredentials)
		}
	}
	// An Auth built by hand is refused too, before anything is sent.
	for _, auth := range []*Auth{{Username: "alice", Password: "hunter2"}, {BearerToken: "hunter2"}} {
		_, err := syncOnce(context.Background(), newCache(t, Options{}), Source{URL: url, Branch: "main", Auth: auth}, "deploy")
		if Reason(err) != ReasonInvalidCredentials || strings.Contains(fmt.Sprint(err), "hunter2") {
			t.Errorf("credentials for an http:// URL: got %v (%s), want %s", err, Reason(err), ReasonInvalidCredentials)
		}
	}
	if n := sawAuth.Load(); n != 0 {
		t.Errorf("the server saw credentials over plain http %d times", n)
	}
}

func keys(data map[string][]byte) []string {
	var out []string
	for k := range data {
		out = append(out, k)
	}
	return out
}

func TestNoFetchOnANearlyFullDisk(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "app", manifests)
	c := newCache(t, Options{MinFreeBytes: 1 << 62})
	_, err := syncOnce(context.Background(), c, Source{URL: s.BaseURL() + "/app.git", Branch: "main"}, "deploy")
	if Reason(err) != ReasonLimitExceeded || !strings.Contains(fmt.Sprint(err), "disk nearly full") {
		t.Fatalf("got %v (%s), want %s saying the disk is nearly full", err, Reason(err), ReasonLimitExceeded)
	}
	if got := s.Requests("app.git"); got.Fetches != 0 {
		t.Errorf("%d fetches reached the server", got.Fetches)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{512: "512 bytes", 64 << 10: "64 KiB", 256 << 20: "256 MiB", 2 << 30: "2 GiB", 1536: "1.5 KiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// holdFirstListing is s behind a gitserver.ListingHolder, closed with the test.
func holdFirstListing(t *testing.T, s *gitserver.Server) *gitserver.ListingHolder {
	t.Helper()
	h := s.HoldFirstListing()
	t.Cleanup(h.Close)
	return h
}

// TestOverlappingSyncRequestsShareTheListingAfterTheRunningOne: a sync
// request must see a push made a moment before it, so requests made while a
// listing that reached the server before the push still runs are not
// answered by it; they share one listing after it, rather than each list
// (5 listings for 5 requests, in a version that moved them on at once).
func TestOverlappingSyncRequestsShareTheListingAfterTheRunningOne(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	before := commit(t, s, "r", manifests)
	held := holdFirstListing(t, s)
	c := newCache(t, Options{})
	src := Source{URL: held.URL + "/r.git", Branch: "main", Tenant: "team"}
	ctx := context.Background()
	request := func(seen chan<- string) {
		asked := src
		asked.Since = time.Now()
		got, err := c.Latest(ctx, asked)
		if err != nil {
			t.Error(err)
		}
		seen <- got
	}
	first, later := make(chan string, 1), make(chan string, 4)
	go request(first)
	<-held.Answered()
	pushed := commit(t, s, "r", map[string]gitserver.File{"deploy/new.yaml": {Content: "kind: ConfigMap\n"}})
	for range 4 {
		go request(later)
	}
	// Once all five wait for the first listing, it may answer.
	for deadline := time.Now().Add(10 * time.Second); listingWaiters(c) < 5; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests wait for a listing, want 5", listingWaiters(c))
		}
	}
	held.Release()
	if got := <-first; got != before {
		t.Errorf("the request made before the push saw %s, want %s", got, before)
	}
	for range 4 {
		if got := <-later; got != pushed {
			t.Errorf("a request made after the push saw %s, want the pushed %s", got, pushed)
		}
	}
	if n := held.Listings.Load(); n != 2 {
		t.Errorf("5 requests made %d listings, want 2 (the first, and one after it for the other four)", n)
	}
}

// listingWaiters counts the callers waiting for shared listings.
func listingWaiters(c *Cache) int {
	c.work.mu.Lock()
	defer c.work.mu.Unlock()
	n := 0
	for key, call := range c.work.calls {
		if strings.HasPrefix(key, "list/") {
			n += call.waiters
		}
	}
	return n
}

// TestAListingThatEndedAsARefreshCameIsNotUsed: a listing that reached the
// server before a push may still be joined just as it ends (its shared call
// is forgotten a moment after; an attacker review timed a first version
// into that gap). Its answer is not used: the URL is listed again.
func TestAListingThatEndedAsARefreshCameIsNotUsed(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	before := commit(t, s, "r", manifests)
	c := newCache(t, Options{})
	src := Source{URL: s.BaseURL() + "/r.git", Branch: "main", Tenant: "team"}
	stale := listing{refs: map[plumbing.ReferenceName]plumbing.Hash{"refs/heads/main": plumbing.NewHash(before)}, at: time.Now()}
	pushed := commit(t, s, "r", map[string]gitserver.File{"deploy/new.yaml": {Content: "kind: ConfigMap\n"}})
	src.Since = time.Now()
	// The listing's call as sharedWork.run leaves it: answered, about to be
	// forgotten and told done.
	ending := &sharedCall{done: make(chan struct{}), val: stale, cancel: func() {}}
	shareKey := "list/" + src.key() + "/" + src.Tenant
	c.work.mu.Lock()
	c.work.calls = map[string]*sharedCall{shareKey: ending}
	c.work.mu.Unlock()
	type answer struct {
		commit string
		err    error
	}
	answered := make(chan answer, 1)
	go func() {
		got, err := c.Latest(context.Background(), src)
		answered <- answer{got, err}
	}()
	for joined, deadline := false, time.Now().Add(10*time.Second); !joined; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Latest did not join the ending listing")
		}
		c.work.mu.Lock()
		if joined = ending.waiters == 1; joined {
			delete(c.work.calls, shareKey)
			close(ending.done)
		}
		c.work.mu.Unlock()
	}
	if got := <-answered; got.err != nil || got.commit != pushed {
		t.Errorf("after the push: %s, %v; want the pushed %s, not the ended listing's %s", got.commit, got.err, pushed, before)
	}
}

// TestKeepListingRefusesOneOlderThanARefresh: a listing that started
// before a push and ends after it (a tenant's, whose callers gave up,
// still parsing its answer) must not be kept, or every tenant's next
// Latest would answer from before the push for ListingTTL.
func TestKeepListingRefusesOneOlderThanARefresh(t *testing.T) {
	c := newCache(t, Options{})
	src := Source{URL: "https://git.example.com/r.git", Branch: "main", Tenant: "team"}
	started := time.Now()
	c.refresh(src, started.Add(time.Millisecond))
	kept := func(at time.Time) bool {
		c.keepListing(src.key(), listing{refs: map[plumbing.ReferenceName]plumbing.Hash{}, at: at})
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.listings[src.key()]
		return ok
	}
	if kept(started) {
		t.Error("a listing older than the push was kept")
	}
	if !kept(started.Add(2 * time.Millisecond)) {
		t.Error("a listing newer than the push was not kept")
	}
}

// TestAnotherTenantsRequestsDoNotMakeAPollListTwice: a poll needs no push,
// so a sync request of another namespace on the same URL, made while the
// poll's listing runs, does not make the poll list again (it did, for a
// version that checked answers against the URL's latest request).
func TestAnotherTenantsRequestsDoNotMakeAPollListTwice(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "r", manifests)
	held := holdFirstListing(t, s)
	c := newCache(t, Options{})
	victim := Source{URL: held.URL + "/r.git", Branch: "main", Tenant: "victim"}
	polled := make(chan error, 2)
	poll := func() {
		_, err := c.Latest(context.Background(), victim)
		polled <- err
	}
	go poll()
	<-held.Answered()
	c.refresh(Source{URL: victim.URL, Tenant: "other"}, time.Now()) // the other namespace's request
	go poll()
	for deadline := time.Now().Add(10 * time.Second); listingWaiters(c) < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d polls wait for the listing, want 2", listingWaiters(c))
		}
	}
	held.Release()
	for range 2 {
		if err := <-polled; err != nil {
			t.Error(err)
		}
	}
	if n := held.Listings.Load(); n != 1 {
		t.Errorf("two polls of one namespace made %d listings after another's request, want 1", n)
	}
}
