package git

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/gitserver"
)

var (
	benchOnce   sync.Once
	benchServer *gitserver.Server
	benchErr    error
)

// benchRepository serves one repository of 1,000 files and 10 MiB under
// deploy/, as in the issue: big enough that a needless fetch shows.
func benchRepository(b *testing.B) *gitserver.Server {
	benchOnce.Do(func() {
		dir, err := tempDir()
		if err != nil {
			benchErr = err
			return
		}
		benchServer, benchErr = gitserver.Start(dir, "127.0.0.1:0", gitserver.Options{})
		if benchErr != nil {
			return
		}
		rng := rand.New(rand.NewSource(1))
		files := map[string]gitserver.File{}
		chunk := make([]byte, 5*1024)
		for i := 0; i < 1000; i++ {
			rng.Read(chunk)
			files[fmt.Sprintf("deploy/app%03d/configmap.yaml", i)] = gitserver.File{
				Content: fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app%03d\ndata:\n  blob: %s\n", i, hex.EncodeToString(chunk)),
			}
		}
		_, benchErr = benchServer.Commit(context.Background(), "big", "main", files)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchServer
}

func BenchmarkFirstFetch(b *testing.B) {
	s := benchRepository(b)
	src := Source{URL: s.BaseURL() + "/big.git", Branch: "main"}
	limits := Limits{MaxTotalBytes: 64 << 20}
	s.ResetCounts()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := newBenchCache(b, Options{Limits: limits})
		tree, err := syncOnce(context.Background(), c, src, "deploy")
		if err != nil {
			b.Fatal(err)
		}
		if len(tree.Files) != 1000 {
			b.Fatalf("%d files", len(tree.Files))
		}
	}
	b.StopTimer()
	got := s.Requests("big.git")
	b.ReportMetric(float64(got.BytesSent)/float64(b.N), "bytes-from-server/op")
	b.ReportMetric(float64(got.Fetches)/float64(b.N), "fetches/op")
}

func BenchmarkNoChangePoll(b *testing.B) {
	s := benchRepository(b)
	src := Source{URL: s.BaseURL() + "/big.git", Branch: "main"}
	c := newBenchCache(b, Options{ListingTTL: time.Nanosecond, Limits: Limits{MaxTotalBytes: 64 << 20}})
	synced, err := syncOnce(context.Background(), c, src, "deploy")
	if err != nil {
		b.Fatal(err)
	}
	s.ResetCounts()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		latest, err := c.Latest(context.Background(), src)
		if err != nil {
			b.Fatal(err)
		}
		if latest != synced.Commit {
			b.Fatal("the remote moved")
		}
	}
	b.StopTimer()
	got := s.Requests("big.git")
	b.ReportMetric(float64(got.BytesSent)/float64(b.N), "bytes-from-server/op")
	b.ReportMetric(float64(got.Fetches)/float64(b.N), "fetches/op")
}

func Benchmark100RepositoriesOneURL(b *testing.B) {
	s := benchRepository(b)
	src := Source{URL: s.BaseURL() + "/big.git", Branch: "main"}
	s.ResetCounts()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := newBenchCache(b, Options{Limits: Limits{MaxTotalBytes: 64 << 20}})
		var wg sync.WaitGroup
		for r := 0; r < 100; r++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := syncOnce(context.Background(), c, src, "deploy"); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	got := s.Requests("big.git")
	b.ReportMetric(float64(got.Fetches)/float64(b.N), "fetches/op")
	b.ReportMetric(float64(got.RefListings)/float64(b.N), "ref-listings/op")
}

func newBenchCache(b *testing.B, opts Options) *Cache {
	opts.Dir = b.TempDir()
	c, err := NewCache(opts)
	if err != nil {
		b.Fatal(err)
	}
	return c
}
