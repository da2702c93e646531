package integration

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"

	"github.com/falsesystems/alumiini/pkg/cmd/server"
	clientset "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned"
)

// testServer is an alumiini API server running in this process.
type testServer struct {
	Client     clientset.Interface
	RESTConfig *rest.Config
	stop       context.CancelFunc
	done       chan error
}

// startServer runs the server standalone (no kube-apiserver to delegate to) on
// a loopback port, with its embedded etcd in dataDir, and returns a clientset
// over the server's own privileged loopback config.
func startServer(t *testing.T, dataDir string) *testServer {
	t.Helper()
	return startServerWith(t, func(o *server.Options) { o.EtcdDataDir = dataDir })
}

// withAndWithoutWatchCache runs test against a server of its own with the
// API server's watch cache on (the default) and off (--watch-cache=false).
func withAndWithoutWatchCache(t *testing.T, test func(t *testing.T, ts *testServer)) {
	for _, watchCache := range []bool{true, false} {
		t.Run(fmt.Sprintf("watch-cache=%v", watchCache), func(t *testing.T) {
			test(t, startServerWith(t, func(o *server.Options) {
				o.EtcdDataDir = t.TempDir()
				o.RecommendedOptions.Etcd.EnableWatchCache = watchCache
			}))
		})
	}
}

// startServerWith is startServer with the options adjusted by configure.
func startServerWith(t *testing.T, configure func(*server.Options)) *testServer {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening on loopback: %v", err)
	}
	o := server.NewOptions(nil, nil)
	configure(o)
	o.RecommendedOptions.SecureServing.Listener = listener
	o.RecommendedOptions.SecureServing.BindPort = listener.Addr().(*net.TCPAddr).Port
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := o.NewServer(ctx)
	if err != nil {
		cancel()
		t.Fatalf("building the server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	config := rest.CopyConfig(srv.GenericAPIServer.LoopbackClientConfig)
	config.QPS, config.Burst = 1000, 1000
	ts := &testServer{Client: clientset.NewForConfigOrDie(config), RESTConfig: config, stop: cancel, done: done}
	t.Cleanup(func() { ts.Stop(t) })

	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-done:
			t.Fatalf("server exited while starting: %v", err)
		default:
		}
		result := ts.Client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx)
		var code int
		result.StatusCode(&code)
		return code == 200, nil
	})
	if err != nil {
		t.Fatalf("server not ready: %v", err)
	}
	return ts
}

// Stop shuts the server down the way SIGTERM does and waits until it has
// drained and stopped its etcd. Stopping twice is harmless.
func (ts *testServer) Stop(t *testing.T) {
	t.Helper()
	if ts.stop == nil {
		return
	}
	ts.stop()
	ts.stop = nil
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("server stopped with an error: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("server did not stop within a minute")
	}
}
