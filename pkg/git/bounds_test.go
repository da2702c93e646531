package git

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
// listing and in a fetch: go-git holds it all in memory (about 140 MiB of
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
		served(t, Source{URL: url, Commit: fits, Auth: auth})
	})
}

// shallowFlood is an upload-pack response whose head is n distinct shallow
// lines, then a flush and NAK: go-git compares each with all before it.
func shallowFlood(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		b.WriteString(pktLine(fmt.Sprintf("shallow %040x\n", i)))
	}
	b.WriteString("0000" + pktLine("NAK\n"))
	return b.Bytes()
}

// A server cannot hold a fetch slot and a core in go-git's comparison of
// shallow lines (attacker review: 80,000 lines, 24 s past the stall check).
func TestAFloodBeforeThePackIsRefused(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "app", manifests)
	flood := proxyTo(t, s, func(w http.ResponseWriter, r *http.Request) bool {
		if !isPackRequest(r) {
			return false
		}
		w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
		_, _ = w.Write(shallowFlood(100_000))
		return true
	})
	_, err := syncOnce(context.Background(), newCache(t, Options{}), Source{URL: flood.URL + "/app.git", Branch: "main"}, "deploy")
	if Reason(err) != ReasonLimitExceeded || !strings.Contains(fmt.Sprint(err), "over 64 KiB of shallow and acknowledgement lines") {
		t.Fatalf("100,000 shallow lines over HTTP: got %v (%s), want %s naming the bound", err, Reason(err), ReasonLimitExceeded)
	}

	// Over SSH the same bound follows the session's output once go-git has
	// read the refs. (A real sshd serves only real git; this feeds the
	// session's output as go-git would read it.)
	c := newCache(t, Options{})
	tr := c.startTransfer(context.Background(), "fetching over ssh", nil)
	defer tr.end()
	refs := pktLine(strings.Repeat("0", 40)+" refs/heads/main\x00multi_ack\n") + "0000"
	out := &sessionOutput{from: io.MultiReader(strings.NewReader(refs), bytes.NewReader(shallowFlood(100_000))), t: tr, inRefs: true, head: packHead{doing: tr.doing}}
	if _, err := io.ReadFull(out, make([]byte, len(refs))); err != nil {
		t.Fatalf("reading the refs: %v", err)
	}
	out.refsRead()
	if _, err := io.Copy(io.Discard, out); Reason(err) != ReasonLimitExceeded {
		t.Fatalf("100,000 shallow lines over SSH: got %v (%s), want %s", err, Reason(err), ReasonLimitExceeded)
	}
}

// The bound on a response's head lets real responses through, however
// they are split between reads: with side-band (the pack in band 1) and
// without (the pack right after NAK).
func TestPackHeadLetsRealResponsesThrough(t *testing.T) {
	head := pktLine("shallow "+strings.Repeat("a", 40)+"\n") + "0000" + pktLine("NAK\n")
	pack := "PACK" + strings.Repeat("\x00", 1<<20)
	responses := map[string]string{
		"side-band":    head + pktLine("\x02Enumerating objects: 3, done.\n") + pktLine("\x01"+pack[:60000]) + "0000",
		"no side-band": head + pack,
	}
	for name, response := range responses {
		for _, chunk := range []int{1, 3, 4096} {
			h := packHead{doing: name}
			for p := []byte(response); len(p) > 0; {
				n := min(chunk, len(p))
				if err := h.scan(p[:n]); err != nil {
					t.Fatalf("%s in reads of %d bytes: %v", name, chunk, err)
				}
				p = p[n:]
			}
			if !h.done {
				t.Errorf("%s in reads of %d bytes: the pack was not found", name, chunk)
			}
		}
	}
}

// alumiini reaches git servers over HTTP and SSH only. go-git reads any URL
// that is neither as a local path and would run git-upload-pack on it: the
// way to another tenant's store (attacker review).
func TestOnlyHTTPAndSSHAreReached(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "app", manifests)
	local := filepath.Join(s.Root(), "app.git")
	for _, url := range []string{
		`git@x:\` + strings.Repeat("/..", 16) + local,
		local,
		"file://" + local,
	} {
		if isSSH(url) {
			t.Errorf("%s read as SSH", url)
		}
		if _, err := syncOnce(context.Background(), newCache(t, Options{}), Source{URL: url, Branch: "main"}, "deploy"); err == nil {
			t.Errorf("%s: served from this machine's files", url)
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
		{"ssh://git@[::1]:2222/repo.git", "git", "[::1]:2222"},
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
