package git

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/falsesystems/alumiini/test/gitserver"
)

var manifests = map[string]gitserver.File{
	"deploy/configmap.yaml":  {Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n"},
	"deploy/nested/svc.yaml": {Content: "apiVersion: v1\nkind: Service\nmetadata:\n  name: b\n"},
	"README.md":              {Content: "outside the path\n"},
}

func newServer(t *testing.T, opts gitserver.Options) *gitserver.Server {
	t.Helper()
	s, err := gitserver.Start(t.TempDir(), "127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newCache(t *testing.T, opts Options) *Cache {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	c, err := NewCache(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func commit(t *testing.T, s *gitserver.Server, repo string, files map[string]gitserver.File) string {
	t.Helper()
	sha, err := s.Commit(context.Background(), repo, "main", files)
	if err != nil {
		t.Fatal(err)
	}
	return sha
}

// syncOnce does what a worker does: list, then fetch and read the path.
func syncOnce(ctx context.Context, c *Cache, src Source, path string) (*Tree, error) {
	commit, err := c.Latest(ctx, src)
	if err != nil {
		return nil, err
	}
	return c.Files(ctx, src, commit, path)
}

func paths(tree *Tree) []string {
	if tree == nil {
		return nil
	}
	var out []string
	for _, f := range tree.Files {
		out = append(out, f.Path)
	}
	return out
}

func TestHTTPSBasicAuthAndCA(t *testing.T) {
	tlsConfig, ca, err := gitserver.NewTLS()
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, gitserver.Options{TLS: tlsConfig, Username: "alice", Password: "s3cret-pw"})
	sha := commit(t, s, "app", manifests)
	url := s.BaseURL() + "/app.git"
	ctx := context.Background()

	good := &Auth{Username: "alice", Password: "s3cret-pw", CABundle: ca}
	tree, err := syncOnce(ctx, newCache(t, Options{}), Source{URL: url, Branch: "main", Auth: good}, "deploy")
	if err != nil {
		t.Fatalf("sync with the right credentials: %v", err)
	}
	if tree.Commit != sha || strings.Join(paths(tree), ",") != "configmap.yaml,nested/svc.yaml" {
		t.Errorf("tree %s %v, want %s with the two files under deploy", tree.Commit, paths(tree), sha)
	}

	_, err = syncOnce(ctx, newCache(t, Options{}), Source{URL: url, Branch: "main", Auth: &Auth{Username: "alice", Password: "wrong-pw", CABundle: ca}}, "deploy")
	if Reason(err) != ReasonAuthenticationFailed || strings.Contains(err.Error(), "wrong-pw") {
		t.Errorf("wrong password: got %q (%s), want an authentication error without the password", err, Reason(err))
	}

	_, err = syncOnce(ctx, newCache(t, Options{}), Source{URL: url, Branch: "main", Auth: &Auth{Username: "alice", Password: "s3cret-pw"}}, "deploy")
	if Reason(err) != ReasonTLSError || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("without the CA: got %q (%s), want a TLS error naming the unknown authority", err, Reason(err))
	}
	_, otherCA, _ := gitserver.NewTLS()
	_, err = syncOnce(ctx, newCache(t, Options{}), Source{URL: url, Branch: "main", Auth: &Auth{Username: "alice", Password: "s3cret-pw", CABundle: otherCA}}, "deploy")
	if Reason(err) != ReasonTLSError {
		t.Errorf("with the wrong CA: got %q (%s), want a TLS error", err, Reason(err))
	}
}

func TestHTTPSBearerToken(t *testing.T) {
	tlsConfig, ca, err := gitserver.NewTLS()
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, gitserver.Options{TLS: tlsConfig, BearerToken: "tok-123"})
	commit(t, s, "app", manifests)
	url := s.BaseURL() + "/app.git"
	ctx := context.Background()
	if _, err := syncOnce(ctx, newCache(t, Options{}), Source{URL: url, Branch: "main", Auth: &Auth{BearerToken: "tok-123", CABundle: ca}}, "deploy"); err != nil {
		t.Fatalf("sync with the token: %v", err)
	}
	_, err = syncOnce(ctx, newCache(t, Options{}), Source{URL: url, Branch: "main", Auth: &Auth{BearerToken: "tok-bad", CABundle: ca}}, "deploy")
	if Reason(err) != ReasonAuthenticationFailed || strings.Contains(err.Error(), "tok-bad") {
		t.Errorf("wrong token: got %q (%s)", err, Reason(err))
	}
}

func TestSSH(t *testing.T) {
	ctx := context.Background()
	sshd, err := gitserver.StartSSHD(ctx, t.TempDir())
	if errors.Is(err, gitserver.ErrNoSSHD) {
		t.Skipf("SKIPPED LOUDLY: no sshd and apt-get cannot install it here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer sshd.Close()
	s := newServer(t, gitserver.Options{})
	sha := commit(t, s, "app", manifests)
	url := sshd.URL(filepath.Join(s.Root(), "app.git"))

	auth, err := AuthFromSecret("ssh-creds", url, map[string][]byte{KeyIdentity: sshd.ClientKey, KeyKnownHosts: sshd.KnownHosts})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := syncOnce(ctx, newCache(t, Options{}), Source{URL: url, Branch: "main", Auth: auth}, "deploy")
	if err != nil {
		t.Fatalf("sync over SSH with the right key: %v", err)
	}
	if tree.Commit != sha || len(tree.Files) != 2 {
		t.Errorf("tree over SSH: %s %v", tree.Commit, paths(tree))
	}
	// The next listing with the same known_hosts does not parse it again
	// (nor write it to a temporary file for the parser).
	if first, err := auth.knownHosts(); err != nil {
		t.Error(err)
	} else if again, _ := auth.knownHosts(); again != first {
		t.Error("known_hosts was parsed again for the same content")
	}

	wrongKey, _ := AuthFromSecret("ssh-creds", url, map[string][]byte{KeyIdentity: sshd.OtherKey, KeyKnownHosts: sshd.KnownHosts})
	_, err = syncOnce(ctx, newCache(t, Options{}), Source{URL: url, Branch: "main", Auth: wrongKey}, "deploy")
	if Reason(err) != ReasonAuthenticationFailed {
		t.Errorf("wrong key: got %q (%s), want an authentication error", err, Reason(err))
	}

	changedKey, _ := AuthFromSecret("ssh-creds", url, map[string][]byte{KeyIdentity: sshd.ClientKey, KeyKnownHosts: sshd.OtherKnownHosts})
	_, err = syncOnce(ctx, newCache(t, Options{}), Source{URL: url, Branch: "main", Auth: changedKey}, "deploy")
	if Reason(err) != ReasonHostKeyMismatch {
		t.Errorf("changed host key: got %q (%s), want it refused as a host key mismatch", err, Reason(err))
	}
	// known_hosts that knows only another host: this one is unknown, refused.
	otherHost := strings.Replace(string(sshd.KnownHosts), "[127.0.0.1]", "[127.0.0.2]", 1)
	unknownHost, _ := AuthFromSecret("ssh-creds", url, map[string][]byte{KeyIdentity: sshd.ClientKey, KeyKnownHosts: []byte(otherHost)})
	_, err = syncOnce(ctx, newCache(t, Options{}), Source{URL: url, Branch: "main", Auth: unknownHost}, "deploy")
	if Reason(err) != ReasonHostKeyMismatch {
		t.Errorf("unknown host: got %q (%s), want it refused", err, Reason(err))
	}
}

func TestUnchangedRemoteCostsOneListingAndNoFetch(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "app", manifests)
	c := newCache(t, Options{ListingTTL: time.Nanosecond})
	src := Source{URL: s.BaseURL() + "/app.git", Branch: "main"}
	ctx := context.Background()

	first, err := syncOnce(ctx, c, src, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	// A fetch begins with its own ref advertisement, so the first sync shows
	// two listings on the server: ours, and the fetch's.
	if got := s.Requests("app.git"); got.Fetches != 1 || got.RefListings != 2 {
		t.Fatalf("first sync: %+v, want two listings and one fetch", got)
	}
	// A poll with nothing new: the worker lists, sees the commit it has, stops.
	latest, err := c.Latest(ctx, src)
	if err != nil || latest != first.Commit {
		t.Fatalf("poll: %s %v", latest, err)
	}
	// Even reading the files again fetches nothing: the store has the commit.
	if _, err := c.Files(ctx, src, latest, "deploy"); err != nil {
		t.Fatal(err)
	}
	if got := s.Requests("app.git"); got.Fetches != 1 || got.RefListings != 3 {
		t.Fatalf("after an idle poll: %+v, want one more listing and still 1 fetch", got)
	}

	second := commit(t, s, "app", map[string]gitserver.File{"deploy/new.yaml": {Content: "kind: ConfigMap\n"}})
	tree, err := syncOnce(ctx, c, src, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	if tree.Commit != second || len(tree.Files) != 3 {
		t.Errorf("after a new commit: %s %v", tree.Commit, paths(tree))
	}
	if got := s.Requests("app.git"); got.Fetches != 2 {
		t.Errorf("a new commit cost %d fetches in all, want 2", got.Fetches)
	}
}

func TestManyRepositoriesOnOneURLShareOneFetch(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "app", manifests)
	c := newCache(t, Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			path := "deploy"
			if i%2 == 0 {
				path = "deploy/nested"
			}
			if _, err := syncOnce(ctx, c, Source{URL: s.BaseURL() + "/app.git", Branch: "main"}, path); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// One listing by the 50, plus the one fetch's own advertisement.
	if got := s.Requests("app.git"); got.Fetches != 1 || got.RefListings != 2 {
		t.Errorf("50 repositories on one URL: %+v, want one listing and one fetch", got)
	}
}

func TestHostileRepositoriesAreRefused(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	limits := Limits{MaxFiles: 20, MaxFileBytes: 1024, MaxTotalBytes: 8 * 1024, MaxDepth: 5}
	deep := map[string]gitserver.File{}
	deep[strings.Repeat("d/", 8)+"x.yaml"] = gitserver.File{Content: "x"}
	many := map[string]gitserver.File{}
	for i := 0; i < 25; i++ {
		many[fmt.Sprintf("m/f%02d.yaml", i)] = gitserver.File{Content: "x"}
	}
	cases := []struct {
		name   string
		files  map[string]gitserver.File
		path   string
		reason string
		names  string
	}{
		{name: "symlink to /etc/passwd", files: map[string]gitserver.File{"p/passwd.yaml": {Symlink: "/etc/passwd"}},
			path: "p", reason: ReasonUnsafeContent, names: "passwd.yaml"},
		{name: "symlink chain escaping through ..", files: map[string]gitserver.File{
			"p/a.yaml": {Symlink: "../q/b"}, "q/b": {Symlink: "../../../etc/passwd"}},
			path: "p", reason: ReasonUnsafeContent, names: "a.yaml"},
		{name: "symlinked path escaping", files: map[string]gitserver.File{"p": {Symlink: "../outside"}},
			path: "p", reason: ReasonUnsafeContent, names: "outside the repository"},
		{name: "path with ..", files: map[string]gitserver.File{"p/a.yaml": {Content: "x"}},
			path: "../other", reason: ReasonUnsafeContent, names: "../other"},
		{name: "missing path", files: map[string]gitserver.File{"p/a.yaml": {Content: "x"}},
			path: "nope", reason: ReasonPathNotFound, names: "nope"},
		{name: "file over the size limit", files: map[string]gitserver.File{"p/big.yaml": {Content: strings.Repeat("x", 2048)}},
			path: "p", reason: ReasonLimitExceeded, names: "big.yaml"},
		{name: "more files than the limit", files: many, path: "m", reason: ReasonLimitExceeded, names: "limit of 20 files"},
		{name: "deeply nested tree", files: deep, path: "d", reason: ReasonLimitExceeded, names: "limit of 5 directories"},
		{name: "symlink loop", files: map[string]gitserver.File{"p/loop": {Symlink: "loop"}},
			path: "p", reason: ReasonUnsafeContent, names: "symbolic links"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := fmt.Sprintf("hostile%d", i)
			commit(t, s, repo, tc.files)
			c := newCache(t, Options{Limits: limits})
			_, err := syncOnce(context.Background(), c, Source{URL: s.BaseURL() + "/" + repo + ".git", Branch: "main"}, tc.path)
			if Reason(err) != tc.reason || !strings.Contains(fmt.Sprint(err), tc.names) {
				t.Fatalf("got %v (%s), want %s naming %q", err, Reason(err), tc.reason, tc.names)
			}
		})
	}
}

func TestSymlinksInsideTheRepositoryAreFollowed(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "links", map[string]gitserver.File{
		"base/cm.yaml":      {Content: "kind: ConfigMap\n"},
		"prod/cm.yaml":      {Symlink: "../base/cm.yaml"},
		"prod/shared":       {Symlink: "../base"},
		"prod/own.yaml":     {Content: "kind: Secret\n"},
		"current":           {Symlink: "prod"},
		"base/.hidden.yaml": {Content: "kind: X\n"},
	})
	tree, err := syncOnce(context.Background(), newCache(t, Options{}), Source{URL: s.BaseURL() + "/links.git", Branch: "main"}, "current")
	if err != nil {
		t.Fatal(err)
	}
	want := "cm.yaml,own.yaml,shared/.hidden.yaml,shared/cm.yaml"
	if got := strings.Join(paths(tree), ","); got != want {
		t.Errorf("files %s, want %s", got, want)
	}
	for _, f := range tree.Files {
		if f.Path == "cm.yaml" && string(f.Data) != "kind: ConfigMap\n" {
			t.Errorf("the symlinked file's content: %q", f.Data)
		}
	}
}

func TestFetchCutOffIsRetried(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	files := map[string]gitserver.File{}
	for i := 0; i < 50; i++ {
		files[fmt.Sprintf("deploy/f%02d.yaml", i)] = gitserver.File{Content: strings.Repeat(fmt.Sprintf("line %d\n", i), 200)}
	}
	commit(t, s, "app", files)
	src := Source{URL: s.BaseURL() + "/app.git", Branch: "main"}
	ctx := context.Background()

	// The server dies mid-transfer once; the retry with backoff succeeds.
	s.BreakNextFetches(1)
	tree, err := syncOnce(ctx, newCache(t, Options{}), src, "deploy")
	if err != nil || len(tree.Files) != 50 {
		t.Fatalf("after one cut-off fetch: %v", err)
	}
	if got := s.Requests("app.git"); got.Fetches != 2 {
		t.Errorf("fetches %d, want 2 (one cut off, one retried)", got.Fetches)
	}

	// Down for longer than the retries: an error; back up: the next sync works
	// on the same store, which the cut transfers did not corrupt.
	c := newCache(t, Options{FetchRetries: 1})
	s.BreakNextFetches(10)
	if _, err := syncOnce(ctx, c, src, "deploy"); err == nil {
		t.Fatal("a server that keeps dying mid-fetch gave no error")
	} else if Reason(err) != ReasonFetchFailed {
		t.Errorf("a server dying mid-fetch: reason %s (%v), want %s", Reason(err), err, ReasonFetchFailed)
	}
	s.BreakNextFetches(0)
	if tree, err := syncOnce(ctx, c, src, "deploy"); err != nil || len(tree.Files) != 50 {
		t.Fatalf("after the server came back: %v", err)
	}
}

func TestUserActionableErrors(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "app", manifests)
	if err := os.MkdirAll(filepath.Join(s.Root(), "empty.git"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := gitserver.Git(context.Background(), "init", "--quiet", "--bare", filepath.Join(s.Root(), "empty.git")); err != nil {
		t.Fatal(err)
	}
	closed := newServer(t, gitserver.Options{})
	unreachable := closed.BaseURL()
	closed.Close()

	cases := []struct {
		name   string
		src    Source
		reason string
		says   string
	}{
		{name: "branch not found", src: Source{URL: s.BaseURL() + "/app.git", Branch: "nope"}, reason: ReasonRefNotFound, says: `branch "nope" not found`},
		{name: "tag not found", src: Source{URL: s.BaseURL() + "/app.git", Tag: "v9"}, reason: ReasonRefNotFound, says: `tag "v9" not found`},
		{name: "repository empty", src: Source{URL: s.BaseURL() + "/empty.git", Branch: "main"}, reason: ReasonRepositoryEmpty, says: "empty"},
		{name: "repository not found", src: Source{URL: s.BaseURL() + "/missing.git", Branch: "main"}, reason: ReasonRepositoryNotFound, says: "not found"},
		{name: "host unreachable", src: Source{URL: unreachable + "/app.git", Branch: "main"}, reason: ReasonHostUnreachable, says: "unreachable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := syncOnce(context.Background(), newCache(t, Options{}), tc.src, "deploy")
			if Reason(err) != tc.reason || !strings.Contains(fmt.Sprint(err), tc.says) {
				t.Fatalf("got %v (%s), want %s saying %q", err, Reason(err), tc.reason, tc.says)
			}
		})
	}
}

func TestPinnedTagAndCommit(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	first := commit(t, s, "app", manifests)
	if err := gitserver.Git(context.Background(), "--git-dir", filepath.Join(s.Root(), "app.git"), "tag", "-a", "-m", "v1", "v1.0.0", first); err != nil {
		t.Fatal(err)
	}
	commit(t, s, "app", map[string]gitserver.File{"deploy/later.yaml": {Content: "x"}})
	ctx := context.Background()
	c := newCache(t, Options{})

	tree, err := syncOnce(ctx, c, Source{URL: s.BaseURL() + "/app.git", Tag: "v1.0.0"}, "deploy")
	if err != nil || tree.Commit != first || len(tree.Files) != 2 {
		t.Fatalf("annotated tag: %v %+v", err, tree)
	}
	pinned := Source{URL: s.BaseURL() + "/app.git", Commit: first}
	pinnedCache := newCache(t, Options{})
	tree, err = syncOnce(ctx, pinnedCache, pinned, "deploy")
	if err != nil || tree.Commit != first || len(tree.Files) != 2 {
		t.Fatalf("pinned commit: %v %+v", err, tree)
	}
	// Fetched once; every later poll answers from the pin without the network.
	s.ResetCounts()
	for i := 0; i < 3; i++ {
		if _, err := syncOnce(ctx, pinnedCache, pinned, "deploy"); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Requests("app.git"); got.RefListings != 0 || got.Fetches != 0 {
		t.Errorf("a pinned commit was polled or fetched again: %+v", got)
	}
}

func TestAuthFromSecret(t *testing.T) {
	const https = "https://git.example.com/r.git"
	const ssh = "ssh://git@git.example.com/r.git"
	cases := []struct {
		name string
		url  string
		data map[string][]byte
		says string
	}{
		{name: "basic", url: https, data: map[string][]byte{"username": []byte("u"), "password": []byte("p")}},
		{name: "token", url: https, data: map[string][]byte{"bearerToken": []byte("t")}},
		{name: "username without password", url: https, data: map[string][]byte{"username": []byte("u")}, says: `secret "creds" key "password": missing`},
		{name: "password without username", url: https, data: map[string][]byte{"password": []byte("p")}, says: `key "username": missing`},
		{name: "bad CA", url: https, data: map[string][]byte{"ca.crt": []byte("not a cert")}, says: `key "ca.crt": no PEM certificate`},
		{name: "empty secret", url: https, data: map[string][]byte{}, says: `secret "creds" has none of the keys`},
		{name: "ssh without identity", url: ssh, data: map[string][]byte{"known_hosts": []byte("x")}, says: `key "identity": missing`},
		{name: "ssh with a malformed identity", url: ssh, data: map[string][]byte{"identity": []byte("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n")}, says: `key "identity": not a valid private key`},
		{name: "ssh with garbage identity", url: ssh, data: map[string][]byte{"identity": []byte("hunter2")}, says: `key "identity": not a PEM-encoded private key`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := AuthFromSecret("creds", tc.url, tc.data)
			if tc.says == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.says) || Reason(err) != ReasonInvalidCredentials {
				t.Fatalf("got %v, want an InvalidCredentials error saying %q", err, tc.says)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error leaks the secret: %v", err)
			}
		})
	}
}

func TestAuthFromSecretSSHKeys(t *testing.T) {
	sshd, err := gitserver.StartSSHD(context.Background(), t.TempDir())
	if errors.Is(err, gitserver.ErrNoSSHD) {
		t.Skipf("SKIPPED LOUDLY: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	sshd.Close()
	url := sshd.URL("/r.git")
	_, err = AuthFromSecret("creds", url, map[string][]byte{"identity": sshd.ClientKey})
	if err == nil || !strings.Contains(err.Error(), `key "known_hosts": missing`) {
		t.Errorf("an SSH key without known_hosts: %v", err)
	}
	_, err = AuthFromSecret("creds", url, map[string][]byte{"identity": sshd.ClientKey, "known_hosts": []byte("garbage line")})
	if err == nil || !strings.Contains(err.Error(), `key "known_hosts"`) {
		t.Errorf("malformed known_hosts: %v", err)
	}
}

func tempDir() (string, error) { return os.MkdirTemp("", "alumiini-git-bench-") }

func TestCacheEvictsLeastRecentlyUsedPastItsBound(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "one", manifests)
	commit(t, s, "two", manifests)
	dir := t.TempDir()
	c := newCache(t, Options{Dir: dir, MaxBytes: 1})
	ctx := context.Background()
	evictionsBefore := testutil.ToFloat64(cacheEvictions)
	if _, err := syncOnce(ctx, c, Source{URL: s.BaseURL() + "/one.git", Branch: "main"}, "deploy"); err != nil {
		t.Fatal(err)
	}
	if _, err := syncOnce(ctx, c, Source{URL: s.BaseURL() + "/two.git", Branch: "main"}, "deploy"); err != nil {
		t.Fatal(err)
	}
	// The store in use when the bound was checked stays; the older one goes.
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d stores on disk past a 1-byte bound, want only the one in use", len(entries))
	}
	if got := testutil.ToFloat64(cacheEvictions) - evictionsBefore; got != 1 {
		t.Errorf("alumiini_git_cache_evictions_total moved by %v, want 1", got)
	}
	// An evicted store costs a re-fetch and nothing else.
	before := s.Requests("one.git").Fetches
	if _, err := syncOnce(ctx, c, Source{URL: s.BaseURL() + "/one.git", Branch: "main"}, "deploy"); err != nil {
		t.Fatal(err)
	}
	if after := s.Requests("one.git").Fetches; after != before+1 {
		t.Errorf("re-reading an evicted repository fetched %d times, want once", after-before)
	}
}

func TestHungServerCostsAtMostTheTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close() // accept, then say nothing
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err = newCache(t, Options{}).Latest(ctx, Source{URL: "http://" + l.Addr().String() + "/r.git", Branch: "main"})
	if Reason(err) != ReasonTimeout {
		t.Errorf("a hung server: got %v (%s), want a timeout", err, Reason(err))
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("a 1s timeout took %s", elapsed)
	}
}

// TestAPushRefreshesTheListingOnceForEveryoneOnTheURL: GitRepositories told
// of one push all see its commit at once, even within the listing TTL, and
// share one new listing rather than each asking the remote.
func TestAPushRefreshesTheListingOnceForEveryoneOnTheURL(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	commit(t, s, "app", manifests)
	c := newCache(t, Options{ListingTTL: time.Hour})
	src := Source{URL: s.BaseURL() + "/app.git", Branch: "main"}
	ctx := context.Background()
	if _, err := c.Latest(ctx, src); err != nil {
		t.Fatal(err)
	}
	pushed := commit(t, s, "app", map[string]gitserver.File{"deploy/new.yaml": {Content: "kind: ConfigMap\n"}})
	before := s.Requests("app.git").RefListings
	receivedAt := time.Now()

	var wg sync.WaitGroup
	seen := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			told := src
			told.Since = receivedAt
			latest, err := c.Latest(ctx, told)
			if err != nil {
				t.Error(err)
			}
			seen <- latest
		}()
	}
	wg.Wait()
	close(seen)
	for latest := range seen {
		if latest != pushed {
			t.Fatalf("a GitRepository told of the push saw %s, want the pushed %s", latest, pushed)
		}
	}
	if got := s.Requests("app.git").RefListings - before; got != 1 {
		t.Errorf("20 GitRepositories told of one push listed %d times, want 1", got)
	}
	// Telling them of the same push again costs nothing more.
	told := src
	told.Since = receivedAt
	if _, err := c.Latest(ctx, told); err != nil || s.Requests("app.git").RefListings-before != 1 {
		t.Errorf("a repeated refresh for one push listed again: %v", err)
	}
}

// TestAStoreStaysSmallHoweverManyPushes: every shallow fetch adds a pack
// and a shallow line, which made each later fetch of the URL slower; past
// maxPacks the store starts afresh, and what it held can still be read.
func TestAStoreStaysSmallHoweverManyPushes(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	pinned := commit(t, s, "app", manifests)
	dir := t.TempDir()
	c := newCache(t, Options{Dir: dir, ListingTTL: time.Nanosecond})
	ctx := context.Background()
	branch := Source{URL: s.BaseURL() + "/app.git", Branch: "main"}
	pin := Source{URL: branch.URL, Commit: pinned}
	if _, err := c.Files(ctx, pin, pinned, "deploy"); err != nil {
		t.Fatal(err)
	}
	var last string
	for i := range 3 * maxPacks {
		last = commit(t, s, "app", map[string]gitserver.File{"deploy/x.yaml": {Content: fmt.Sprintf("kind: ConfigMap\nv: %d\n", i)}})
		if _, err := syncOnce(ctx, c, branch, "deploy"); err != nil {
			t.Fatal(err)
		}
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "*", "objects", "pack", "*.pack"))
	shallow, _ := filepath.Glob(filepath.Join(dir, "*", "shallow"))
	lines := 0
	for _, f := range shallow {
		data, _ := os.ReadFile(f)
		lines += strings.Count(string(data), "\n")
	}
	if len(packs) > maxPacks+1 || lines > maxPacks+2 {
		t.Errorf("after %d pushes the store holds %d packs and %d shallow lines", 3*maxPacks, len(packs), lines)
	}
	for _, read := range []struct {
		src    Source
		commit string
	}{{branch, last}, {pin, pinned}} {
		tree, err := c.Files(ctx, read.src, read.commit, "deploy")
		if err != nil || tree.Commit != read.commit || len(tree.Files) < 2 {
			t.Errorf("reading %s after many pushes: %v %v", read.commit[:7], err, paths(tree))
		}
	}
}

// TestAStoreStartedAfreshBetweenALookAndARead: another caller's fetch
// starts the store afresh (past maxPacks) and brings a newer commit, after
// this caller found its pinned commit there and before it reads it. The
// read fetches the pinned commit again instead of failing the sync "object
// not found" (it did, by reading).
func TestAStoreStartedAfreshBetweenALookAndARead(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	pinned := commit(t, s, "app", manifests)
	newer := commit(t, s, "app", map[string]gitserver.File{"deploy/new.yaml": {Content: "kind: ConfigMap\n"}})
	c := newCache(t, Options{})
	ctx := context.Background()
	pin := Source{URL: s.BaseURL() + "/app.git", Commit: pinned}
	if _, err := c.Files(ctx, pin, pinned, "deploy"); err != nil {
		t.Fatal(err)
	}
	restarted := false
	c.testHookAfterLook = func(st *store) {
		if restarted {
			return
		}
		restarted = true
		// What another caller's fetch does to a store past maxPacks: it
		// removes it under its lock, and fetches what it wants.
		if err := st.lock(ctx, pin); err != nil {
			t.Error(err)
			return
		}
		st.close()
		_ = os.RemoveAll(st.dir)
		st.unlock()
		if _, err := c.fetch(ctx, Source{URL: pin.URL, Branch: "main"}, st, plumbing.NewHash(newer)); err != nil {
			t.Error(err)
		}
	}
	fetches := s.Requests("app.git").Fetches
	tree, err := c.Files(ctx, pin, pinned, "deploy")
	if err != nil || tree.Commit != pinned || len(tree.Files) == 0 {
		t.Fatalf("reading a commit whose store was started afresh meanwhile: %v %v", err, paths(tree))
	}
	if got := s.Requests("app.git").Fetches - fetches; got != 2 {
		t.Errorf("%d fetches, want 2: the other caller's, and this one's commit again", got)
	}
}

// TestAnOlderPinnedCommitAfterANewerBranch: a store that holds a branch
// offers its commits when fetching, and a server then sends nothing for an
// older commit; pinning (or rolling back to) that commit still works.
func TestAnOlderPinnedCommitAfterANewerBranch(t *testing.T) {
	s := newServer(t, gitserver.Options{})
	old := commit(t, s, "app", manifests)
	commit(t, s, "app", map[string]gitserver.File{"deploy/x.yaml": {Content: "kind: ConfigMap\n"}})
	c := newCache(t, Options{})
	ctx := context.Background()
	branch := Source{URL: s.BaseURL() + "/app.git", Branch: "main"}
	if _, err := syncOnce(ctx, c, branch, "deploy"); err != nil {
		t.Fatal(err)
	}
	tree, err := c.Files(ctx, Source{URL: branch.URL, Commit: old}, old, "deploy")
	if err != nil || tree.Commit != old {
		t.Fatalf("the older pinned commit: %v", err)
	}
}
