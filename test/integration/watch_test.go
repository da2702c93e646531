package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// TestStalledWatchesAreNotBuffered: clients that stop reading their watches
// (a tenant's on purpose, or a `kubectl get -w | less` left open) must not
// make the process hold every later event for them; the API server, the
// controller and etcd share its memory. The watch cache, on by default,
// closes such watches. Without it (--watch-cache=false) etcd's client
// buffers each event for each of them: eight grew the heap by 117 MiB over
// 600 writes of 16 KiB.
func TestStalledWatchesAreNotBuffered(t *testing.T) {
	const stalled, writes, size = 8, 600, 16 << 10
	const bound = 80 << 20
	ts := startServer(t, t.TempDir())
	ctx := context.Background()
	repos := ts.Client.AlumiiniV1alpha1().GitRepositories("default")
	if _, err := repos.Create(ctx, newRepo("big"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	list, err := repos.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range stalled {
		conn := openUnreadWatch(t, ts.RESTConfig, "watch=1&timeoutSeconds=3600&resourceVersion="+list.ResourceVersion)
		defer conn.Close()
	}
	time.Sleep(time.Second)
	before := liveHeap()
	for i := range writes {
		pad := strings.Repeat(string(rune('a'+i%26)), size)
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"pad":%q}}}`, pad)
		if _, err := repos.Patch(ctx, "big", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * time.Second)
	grown := liveHeap() - before
	t.Logf("%d writes of %d KiB, %d watches nobody reads: the heap grew by %d MiB", writes, size>>10, stalled, grown>>20)
	if grown > bound {
		t.Errorf("after %d writes of %d KiB with %d watches nobody reads, the heap grew by %d MiB; want under %d MiB",
			writes, size>>10, stalled, grown>>20, bound>>20)
	}
}

// openUnreadWatch starts a watch of default's GitRepositories over a TLS
// connection of its own with a tiny receive buffer, and never reads it.
func openUnreadWatch(t *testing.T, config *rest.Config, query string) net.Conn {
	t.Helper()
	server, err := url.Parse(config.Host)
	if err != nil {
		t.Fatal(err)
	}
	dialer := net.Dialer{Control: func(_, _ string, raw syscall.RawConn) error {
		return raw.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	conn, err := dialer.Dial("tcp", server.Host)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(config.TLSClientConfig.CAData)
	client := tls.Client(conn, &tls.Config{RootCAs: roots, ServerName: config.TLSClientConfig.ServerName,
		NextProtos: []string{"http/1.1"}})
	request := fmt.Sprintf("GET /apis/alumiini.false.systems/v1alpha1/namespaces/default/gitrepositories?%s HTTP/1.1\r\n"+
		"Host: %s\r\nAuthorization: Bearer %s\r\nAccept: application/json\r\n\r\n", query, server.Host, config.BearerToken)
	if _, err := client.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	return client
}

// liveHeap is this process's live heap after a collection.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	return int64(stats.HeapAlloc)
}
