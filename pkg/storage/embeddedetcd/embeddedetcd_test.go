package embeddedetcd

import (
	"context"
	"testing"
	"time"

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

func client(t *testing.T, s *Server) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: s.ClientURLs(), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	return c
}
