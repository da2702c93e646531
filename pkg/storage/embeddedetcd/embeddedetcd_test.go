package embeddedetcd

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestRestartKeepsData writes a key, stops etcd, starts it again on the same
// directory and reads the key back: the guarantee the API server's restart relies on.
func TestRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	put := func(s *Server) {
		c := client(t, s)
		defer c.Close()
		if _, err := c.Put(ctx, "/alumiini/test", "kept"); err != nil {
			t.Fatalf("put: %v", err)
		}
	}
	first, err := Start(ctx, Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	put(first)
	first.Close()

	second, err := Start(ctx, Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	c := client(t, second)
	defer c.Close()
	resp, err := c.Get(ctx, "/alumiini/test")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "kept" {
		t.Fatalf("after restart got %v, want the value written before", resp.Kvs)
	}
}

func TestTwoServersDoNotCollide(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := Start(ctx, Config{DataDir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Start(ctx, Config{DataDir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.ClientURLs()[0] == b.ClientURLs()[0] {
		t.Fatalf("both servers listen on %s", a.ClientURLs()[0])
	}
}

func TestMissingDataDir(t *testing.T) {
	if _, err := Start(context.Background(), Config{}); err == nil {
		t.Fatal("expected an error naming the missing data directory")
	}
}

// TestOnlyItsOwnClientsGetIn: another process on the host, without the
// client certificate made at start, can neither read nor write, even with
// TLS and a certificate of its own CA.
func TestOnlyItsOwnClientsGetIn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{DataDir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.ClientURLs()[0], "https://127.0.0.1:") {
		t.Fatalf("client URL %s: want https on loopback", s.ClientURLs()[0])
	}
	other, err := newCredentials() // a stranger's CA and client certificate
	if err != nil {
		t.Fatal(err)
	}
	defer other.remove()
	strangers := map[string]*tls.Config{
		"plain text":                nil,
		"TLS without a certificate": {InsecureSkipVerify: true},
		"a certificate of another CA": tlsConfig(t, transport.TLSInfo{CertFile: other.client.CertFile,
			KeyFile: other.client.KeyFile, InsecureSkipVerify: true}),
	}
	for name, cfg := range strangers {
		endpoint := s.ClientURLs()[0]
		if cfg == nil {
			endpoint = "http://" + strings.TrimPrefix(endpoint, "https://")
		}
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: cfg, DialTimeout: 2 * time.Second})
		if err != nil {
			continue // refused at dial: as good
		}
		opCtx, opCancel := context.WithTimeout(ctx, 3*time.Second)
		_, putErr := c.Put(opCtx, "/alumiini/intruder", "x")
		_, getErr := c.Get(opCtx, "/alumiini/test")
		opCancel()
		c.Close()
		if putErr == nil || getErr == nil {
			t.Errorf("%s: write error %v, read error %v; want both refused", name, putErr, getErr)
		}
	}
	c := client(t, s)
	defer c.Close()
	if resp, err := c.Get(ctx, "/alumiini/intruder"); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("the intruder key: %v %v", resp, err)
	}
	s.Close()
	if _, err := os.Stat(s.credentials.dir); !os.IsNotExist(err) {
		t.Errorf("the certificates outlive etcd: %v", err)
	}
}

// TestCertificatesOfKilledProcessesAreRemovedButNotRunningOrNewOnes: a process killed before
// it could remove its certificates leaves their directory behind, and a
// pod's temporary directory outlives its container's restarts; the next
// start removes it, but never a running process's directory, nor one just
// made (its process may not have locked it yet).
func TestCertificatesOfKilledProcessesAreRemovedButNotRunningOrNewOnes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	running, err := Start(ctx, Config{DataDir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()
	old := time.Now().Add(-2 * staleAfter)
	killed := filepath.Join(tmp, credentialsPrefix+"killed")   // its lock file left unlocked
	earlier := filepath.Join(tmp, credentialsPrefix+"earlier") // made before lock files, never locked
	young := filepath.Join(tmp, credentialsPrefix+"young")
	fifo := filepath.Join(tmp, credentialsPrefix+"fifo")          // another user's trap in a shared /tmp
	earlierRunning := filepath.Join(tmp, credentialsPrefix+"old") // an earlier version's, running: it locks the directory only
	for _, dir := range []string{killed, earlier, young, fifo, earlierRunning} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(killed, lockFile), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(fifo, lockFile), 0o600); err != nil {
		t.Fatal(err)
	}
	held, err := lockDirectory(earlierRunning)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	for _, dir := range []string{killed, earlier, fifo, earlierRunning, running.credentials.dir} {
		if err := os.Chtimes(dir, old, old); err != nil {
			t.Fatal(err)
		}
	}

	next, err := Start(ctx, Config{DataDir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	for _, dir := range []string{killed, earlier} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s, left by a process that ended, is still there (%v)", dir, err)
		}
	}
	for _, dir := range []string{young, fifo, earlierRunning, running.credentials.dir} {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("%s was removed: %v", dir, err)
		}
	}
	putThrough(ctx, t, running, "/alumiini/test", "still served")
}

func client(t *testing.T, s *Server) *clientv3.Client {
	t.Helper()
	creds := s.ClientTLS()
	cfg := tlsConfig(t, transport.TLSInfo{CertFile: creds.CertFile, KeyFile: creds.KeyFile, TrustedCAFile: creds.CAFile})
	c, err := clientv3.New(clientv3.Config{Endpoints: s.ClientURLs(), TLS: cfg, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	return c
}

func tlsConfig(t *testing.T, info transport.TLSInfo) *tls.Config {
	t.Helper()
	cfg, err := info.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestAFailureAfterStartIsReportedAndCloseIsNot: etcd stopping on its own
// (here its server is stopped behind the Server's back) is reported to
// OnFailure, so the process ends and is restarted; Close is not a failure.
func TestAFailureAfterStartIsReportedAndCloseIsNot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	failed := make(chan error, 2)
	report := func(err error) { failed <- err }
	s, err := Start(ctx, Config{DataDir: t.TempDir(), UnsafeNoFsync: true, OnFailure: report})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.etcd.Server.Stop()
	select {
	case err := <-failed:
		if err == nil {
			t.Error("OnFailure was told nil")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("etcd stopped and OnFailure was never told")
	}

	closed, err := Start(ctx, Config{DataDir: t.TempDir(), UnsafeNoFsync: true, OnFailure: report})
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	select {
	case err := <-failed:
		t.Errorf("Close was reported as a failure: %v", err)
	case <-time.After(2 * time.Second):
	}
}
