package git

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"

	"github.com/falsesystems/alumiini/test/gitserver"
)

// manyRefs gives repo tags pointing at commit until their advertisement (as
// git sends it, in pkt-lines) takes about size bytes. The names are short,
// as most are: over SSH each may travel in a packet of its own, whose
// framing costs more than the ref.
func manyRefs(t *testing.T, s *gitserver.Server, repo, commit string, size int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# pack-refs with: peeled fully-peeled sorted \n")
	for i, sent := 0, 0; sent < size; i++ {
		line := fmt.Sprintf("%s refs/tags/v%07d\n", commit, i)
		b.WriteString(line)
		sent += len(line) + 4
	}
	if err := os.WriteFile(filepath.Join(s.Root(), repo+".git", "packed-refs"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A server's ref advertisement is bounded to 16 MiB over HTTP and SSH, in a
// listing and in a fetch: go-git holds it all in memory (about 74 MiB of live
// heap for 16 MiB). Over SSH a fetch's advertisement was once bounded only by
// --max-fetch-bytes (256 MiB), and then by the encrypted bytes, which refused
// 14 MiB of short refs.
func TestARefAdvertisementIsBoundedOverEveryTransport(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	huge := commit(t, s, "huge", manifests)
	manyRefs(t, s, "huge", huge, maxAdvertisementBytes+64<<10)
	fits := commit(t, s, "fits", manifests)
	manyRefs(t, s, "fits", fits, maxAdvertisementBytes-64<<10)
	refused := func(t *testing.T, src Source) {
		t.Helper()
		_, err := syncOnce(context.Background(), newCache(t, Options{}), src, "deploy")
		if Reason(err) != ReasonLimitExceeded || !strings.Contains(fmt.Sprint(err), "list of refs is over the limit of 16 MiB") {
			t.Fatalf("16 MiB and 64 KiB of refs: got %v (%s), want %s naming the refs' limit", err, Reason(err), ReasonLimitExceeded)
		}
	}
	served := func(t *testing.T, src Source) {
		t.Helper()
		tree, err := syncOnce(context.Background(), newCache(t, Options{}), src, "deploy")
		if err != nil || tree.Commit != fits {
			t.Fatalf("16 MiB less 64 KiB of refs from %s: %v, want commit %s", src.describe(), err, fits)
		}
	}
	// A pinned commit is fetched without a listing first: the fetch's own
	// advertisement is what is bounded.
	t.Run("http", func(t *testing.T) {
		refused(t, Source{URL: s.BaseURL() + "/huge.git", Branch: "main"})
		refused(t, Source{URL: s.BaseURL() + "/huge.git", Commit: huge})
		served(t, Source{URL: s.BaseURL() + "/fits.git", Branch: "main"})
		served(t, Source{URL: s.BaseURL() + "/fits.git", Commit: fits})
	})
	t.Run("ssh", func(t *testing.T) {
		sshd := startSSHD(t)
		overSSH := func(repo string) (string, *Auth) {
			url := sshd.URL(filepath.Join(s.Root(), repo+".git"))
			return url, sshdAuth(t, sshd, url)
		}
		url, auth := overSSH("huge")
		refused(t, Source{URL: url, Branch: "main", Auth: auth})
		refused(t, Source{URL: url, Commit: huge, Auth: auth})
		url, auth = overSSH("fits")
		served(t, Source{URL: url, Branch: "main", Auth: auth})
		served(t, Source{URL: url, Commit: fits, Auth: auth})
	})
}

// shallowLines is n distinct shallow lines.
func shallowLines(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(pktLine(fmt.Sprintf("shallow %040x\n", i)))
	}
	return b.String()
}

// answeringPackRequests serves s, but answers every request for a pack with
// response(), as a hostile server may.
func answeringPackRequests(t *testing.T, s *gitserver.Server, response func() string) *httptest.Server {
	t.Helper()
	return proxyTo(t, s, func(w http.ResponseWriter, r *http.Request) bool {
		if !isPackRequest(r) {
			return false
		}
		w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
		_, _ = io.WriteString(w, response())
		return true
	})
}

// floods are upload-pack responses to a shallow fetch that make go-git keep
// and compare 100,000 shallow lines, or keep 100,000 ACKs, before any pack:
// plainly, and behind lines that look like the pack's start to a reader
// that does not read as go-git does (go-git skips unknown lines until the
// shallow section's flush).
var floods = map[string]string{
	"shallow lines":                 shallowLines(100_000) + "0000" + pktLine("NAK\n"),
	"shallow lines behind band 1":   pktLine("\x01PACK") + shallowLines(100_000) + "0000" + pktLine("NAK\n"),
	"shallow lines behind progress": pktLine("\x02Counting objects\n") + shallowLines(100_000) + "0000" + pktLine("NAK\n"),
	"shallow lines behind a NAK":    pktLine("NAK\n") + shallowLines(100_000) + "0000" + pktLine("NAK\n"),
	"ACKs":                          "0000" + strings.Repeat(pktLine("ACK "+strings.Repeat("a", 40)+" continue\n"), 100_000),
	// go-git takes lengths up to 0xfff4; a reader refusing above 0xfff0
	// stopped following there, and go-git went on.
	"shallow lines behind the longest line": longestLine("x") + shallowLines(100_000) + "0000" + pktLine("NAK\n"),
	"ACKs behind the longest line":          "0000" + longestLine("ACK "+strings.Repeat("a", 40)+" ") + strings.Repeat(pktLine("ACK "+strings.Repeat("a", 40)+" continue\n"), 100_000),
}

// longestLine is a pkt-line of the longest length go-git reads, starting
// with start.
func longestLine(start string) string {
	return fmt.Sprintf("%04x", pktline.OversizePayloadMax+4) + start + strings.Repeat("x", pktline.OversizePayloadMax-len(start))
}

// A server cannot hold a fetch slot and a core in go-git's comparison of
// shallow lines (attacker review: 80,000 lines, 24 s past the stall check),
// over HTTP or SSH.
func TestAFloodBeforeThePackIsRefused(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	sha := commit(t, s, "app", manifests)
	for name, flood := range floods {
		t.Run(name, func(t *testing.T) {
			overHTTP := answeringPackRequests(t, s, func() string { return flood })
			sshURL, sshAuth := hostileSSHD(t, sha, []byte(flood))
			for _, src := range []Source{{URL: overHTTP.URL + "/app.git", Branch: "main"}, {URL: sshURL, Branch: "main", Auth: sshAuth}} {
				_, err := syncOnce(context.Background(), newCache(t, Options{}), src, "deploy")
				if Reason(err) != ReasonLimitExceeded || !strings.Contains(fmt.Sprint(err), "over 64 KiB of shallow and acknowledgement lines before the pack") {
					t.Errorf("%s: got %v (%s), want %s naming the bound", src.URL, err, Reason(err), ReasonLimitExceeded)
				}
			}
		})
	}
}

// A redirect that gives the endpoint a path ending in an escaped "?" makes
// go-git POST for the pack to a path ending elsewhere: the bound follows the
// method, not the path (attacker review: unbounded before).
func TestARedirectCannotLeaveThePackHeadUnbounded(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "app", manifests)
	var posted atomic.Value
	redirecting := proxyTo(t, s, func(w http.ResponseWriter, r *http.Request) bool {
		switch {
		case r.Method == http.MethodPost:
			posted.Store(r.URL.Path)
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
			_, _ = io.WriteString(w, floods["shallow lines"])
			return true
		case r.URL.Path == "/app.git/info/refs":
			http.Redirect(w, r, "/evil%3F/info/refs?"+r.URL.RawQuery, http.StatusFound)
			return true
		case r.URL.Path == "/evil?/info/refs":
			r.URL.Path, r.URL.RawPath = "/app.git/info/refs", ""
		}
		return false
	})
	_, err := syncOnce(context.Background(), newCache(t, Options{}), Source{URL: redirecting.URL + "/app.git", Branch: "main"}, "deploy")
	if Reason(err) != ReasonLimitExceeded || !strings.Contains(fmt.Sprint(err), "over 64 KiB of shallow and acknowledgement lines before the pack") {
		t.Fatalf("a flood after a redirect: got %v (%s), want %s naming the bound", err, Reason(err), ReasonLimitExceeded)
	}
	if got := posted.Load(); got != "/evil" {
		t.Errorf("go-git posted for the pack to %v, want /evil: the redirect did not take", got)
	}
}

// A pinned commit that a server refuses by hash is looked for in every
// branch's history, but not in more than maxFallbackBranches branches, and
// the branches are not written to the store: go-git wrote a file for each,
// in directories as deep as the server named them (attacker reviews:
// 250,000 files; 20 branches 1,900 directories deep hung every later sync).
func TestAPinnedCommitsFallbackLeavesNoBranchesBehind(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	older := commit(t, s, "branchy", manifests)
	newer := commit(t, s, "branchy", map[string]gitserver.File{"deploy/later.yaml": {Content: "x"}})
	deep := strings.Repeat("a/", 200) + "z"
	branches := func(n int) {
		t.Helper()
		var refs strings.Builder
		refs.WriteString("# pack-refs with: peeled fully-peeled sorted \n")
		for i := range n {
			fmt.Fprintf(&refs, "%s refs/heads/b%06d/%s\n", newer, i, deep)
		}
		if err := os.WriteFile(filepath.Join(s.Root(), "branchy.git", "packed-refs"), []byte(refs.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sshd := startSSHD(t)
	url := sshd.URL(filepath.Join(s.Root(), "branchy.git"))
	dir := t.TempDir()
	c := newCache(t, Options{Dir: dir})
	leftBehind := func() int {
		n := 0
		stores, _ := filepath.Glob(filepath.Join(dir, "*", "refs", "alumiini", "heads"))
		for _, heads := range stores {
			_ = filepath.WalkDir(heads, func(string, fs.DirEntry, error) error { n++; return nil })
		}
		return n
	}

	branches(20)
	tree, err := syncOnce(context.Background(), c, Source{URL: url, Commit: older, Auth: sshdAuth(t, sshd, url)}, "deploy")
	if err != nil || tree.Commit != older {
		t.Fatalf("an older commit found through 20 deep branches: %v", err)
	}
	if n := leftBehind(); n > 0 {
		t.Errorf("the fallback left %d files and directories of branches in the store", n)
	}
	// What it fetched is stored as a pack, as any fetch is, not unpacked.
	loose, _ := filepath.Glob(filepath.Join(dir, "*", "objects", "??", "*"))
	packs, _ := filepath.Glob(filepath.Join(dir, "*", "objects", "pack", "*.pack"))
	if len(loose) > 0 || len(packs) == 0 {
		t.Errorf("the fallback stored %d loose objects and %d packs, want only packs", len(loose), len(packs))
	}

	branches(maxFallbackBranches + 100)
	missing := strings.Repeat("ab", 20) // in no branch: the fallback searches all
	_, err = syncOnce(context.Background(), c, Source{URL: url, Commit: missing, Auth: sshdAuth(t, sshd, url)}, "deploy")
	if Reason(err) != ReasonLimitExceeded || !strings.Contains(fmt.Sprint(err), "over 4096 branches to search for it") {
		t.Fatalf("a missing commit with 4,196 branches to search: got %v (%s), want %s naming the bound", err, Reason(err), ReasonLimitExceeded)
	}
	if n := leftBehind(); n > 0 {
		t.Errorf("the refused fallback left %d files and directories of branches in the store", n)
	}
}

// Shallow lines a server sends before failing a fetch do not pile up in the
// store: go-git writes them before it reads the pack, and sends and compares
// them all on every later fetch (attacker review: 1,000,000 lines after 210
// syncs, 49 s a sync).
func TestShallowLinesDoNotPileUpInTheStore(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "app", manifests)
	var fetches atomic.Int32
	noPack := answeringPackRequests(t, s, func() string {
		n := int(fetches.Add(1))
		var lines strings.Builder
		for i := range 1000 {
			lines.WriteString(pktLine(fmt.Sprintf("shallow %020x%020x\n", n, i)))
		}
		return lines.String() + "0000" + pktLine("NAK\n")
	})
	dir := t.TempDir()
	c := newCache(t, Options{Dir: dir})
	for range 5 {
		if _, err := syncOnce(context.Background(), c, Source{URL: noPack.URL + "/app.git", Branch: "main"}, "deploy"); err == nil {
			t.Fatal("a fetch without a pack succeeded")
		}
	}
	stores, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, store := range stores {
		if n := countShallows(store); n > maxShallows+1000 {
			t.Errorf("the store holds %d shallow lines after %d fetches without a pack, want at most %d", n, fetches.Load(), maxShallows+1000)
		}
	}
	if fetches.Load() < 5 {
		t.Fatalf("only %d fetches reached the server", fetches.Load())
	}
}

// The bound on a response's head lets real responses through, however
// they are split between reads: shallow or not, with side-band (the pack in
// band 1, after progress) and without (the pack right after NAK).
func TestPackHeadLetsRealResponsesThrough(t *testing.T) {
	shallows := pktLine("shallow "+strings.Repeat("a", 40)+"\n") + "0000"
	pack := "PACK" + strings.Repeat("\x00", 1<<20)
	sideBand := pktLine("NAK\n") + pktLine("\x02Enumerating objects: 3, done.\n") + pktLine("\x01"+pack[:60000]) + pktLine("\x01"+pack[60000:120000]) + "0000"
	plain := pktLine("NAK\n") + pack
	responses := []struct {
		name     string
		shallow  bool
		response string
	}{
		{"shallow, side-band", true, shallows + sideBand},
		{"shallow, no side-band", true, shallows + plain},
		{"side-band", false, sideBand},
		{"no side-band", false, plain},
		{"an ACK", false, pktLine("ACK "+strings.Repeat("b", 40)+"\n") + plain},
	}
	for _, tc := range responses {
		for _, chunk := range []int{1, 3, 7, 4096} {
			h := newPackHead(tc.name, tc.shallow)
			for p := []byte(tc.response); len(p) > 0; {
				n := min(chunk, len(p))
				if err := h.scan(p[:n]); err != nil {
					t.Fatalf("%s in reads of %d bytes: %v", tc.name, chunk, err)
				}
				p = p[n:]
			}
			if h.section != atPack {
				t.Errorf("%s in reads of %d bytes: the pack was not found", tc.name, chunk)
			}
		}
	}
}

// A listing's transfer stops at 64 MiB on the wire, 4× its refs' bound, so
// SSH's framing of 16 MiB of refs fits.
func TestAListingsWireBytesAreBounded(t *testing.T) {
	tr := newCache(t, Options{}).startTransfer(context.Background(), "listing refs of ssh://git@example.invalid/r.git", Source{})
	defer tr.end()
	if err := tr.count(4 * maxAdvertisementBytes); err != nil {
		t.Fatalf("64 MiB: %v", err)
	}
	if err := tr.count(1); Reason(err) != ReasonLimitExceeded {
		t.Errorf("one byte past 64 MiB: %v, want %s", err, ReasonLimitExceeded)
	}
}

// alumiini reaches git servers over HTTP and SSH only. go-git reads any URL
// that is neither as a local path and would run git-upload-pack on it: the
// way to another tenant's store (attacker review).
func TestOnlyHTTPAndSSHAreReached(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "app", manifests)
	local := filepath.Join(s.Root(), "app.git")
	installTransports()
	for _, protocol := range []string{"file", "git"} {
		if _, err := client.NewClient(&transport.Endpoint{Protocol: protocol}); err == nil {
			t.Errorf("go-git still has its %s transport", protocol)
		}
	}
	for _, url := range []string{
		`git@x:\` + strings.Repeat("/..", 16) + local,
		local,
		"file://" + local,
	} {
		if isSSH(url) {
			t.Errorf("%s read as SSH", url)
		}
		_, err := syncOnce(context.Background(), newCache(t, Options{}), Source{URL: url, Branch: "main"}, "deploy")
		if Reason(err) != ReasonFetchFailed || !strings.Contains(fmt.Sprint(err), "only over http(s) and ssh") {
			t.Errorf("%s: got %v (%s), want it refused as neither http(s) nor ssh", url, err, Reason(err))
		}
	}
}

// The SSH meter, the user and the host key algorithms follow go-git's
// reading of a URL, in any spelling it accepts.
func TestSSHURLsAreReadAsGoGitReadsThem(t *testing.T) {
	cases := []struct{ url, user, address string }{
		{"ssh://deploy@git.example.com:2222/org/repo.git", "deploy", "git.example.com:2222"},
		{"SSH://git.example.com/org/repo.git", "git", "git.example.com:22"},
		{"git@git.example.com:org/repo.git", "git", "git.example.com:22"},
	}
	for _, tc := range cases {
		if !isSSH(tc.url) || sshUser(tc.url) != tc.user || sshAddress(tc.url) != tc.address {
			t.Errorf("%s: SSH %v, user %q, address %q; want SSH, %q, %q", tc.url, isSSH(tc.url), sshUser(tc.url), sshAddress(tc.url), tc.user, tc.address)
		}
	}
	for _, url := range []string{"https://git.example.com/org/repo.git", "http://127.0.0.1:8080/r.git"} {
		if isSSH(url) {
			t.Errorf("%s read as SSH", url)
		}
	}
}
