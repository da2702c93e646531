package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/cmd/server"
)

// TestAStopEndsWaitsAndLeavesStuckClientsBehind: a stop ends within a pod's
// grace period whatever clients hold. A sync request waiting for its result
// is answered at once (503, the request staying queued, as the next process
// finds it), and a client that stopped reading a large answer holds the
// stop for 10 s, not until its connection breaks (k8s.io/apiserver's wait);
// the audit events buffered by then are still sent.
func TestAStopEndsWaitsAndLeavesStuckClientsBehind(t *testing.T) {
	dataDir := t.TempDir()
	audited := auditWebhook(t)
	ts := startServerWith(t, func(o *server.Options) {
		o.EtcdDataDir = dataDir
		o.RecommendedOptions.Audit.PolicyFile = audited.policy
		o.RecommendedOptions.Audit.WebhookOptions.ConfigFile = audited.kubeconfig
	})
	ctx := context.Background()
	const largeRepos = 64
	createLargeRepos(t, ts, largeRepos)
	stuck := listWithoutReading(t, ts.RESTConfig, "/apis/alumiini.false.systems/v1alpha1/namespaces/default/gitrepositories")
	defer stuck.Close()
	pendingID, waited := startWaitingSync(t, ts, "large-0")
	// Time for the wait to start watching (its request is recorded before),
	// and for the LIST to fill the socket buffers.
	time.Sleep(time.Second)

	stopping := time.Now()
	ts.stop()
	ts.stop = nil
	select {
	case err := <-waited:
		status, ok := err.(apierrors.APIStatus)
		if !ok || status.Status().Code != http.StatusServiceUnavailable ||
			!strings.Contains(err.Error(), "alumiini replica is stopping") || !strings.Contains(err.Error(), pendingID) {
			t.Errorf("the waiting sync request got %v, want 503 saying alumiini stops and naming request %s", err, pendingID)
		}
		t.Logf("the waiting sync request was answered %s after the stop began", time.Since(stopping).Round(time.Millisecond))
	case <-time.After(2 * time.Second):
		t.Errorf("the waiting sync request was not answered within 2 s of the stop")
	}
	select {
	case err := <-ts.done:
		if err != nil {
			t.Errorf("the server stopped with an error: %v", err)
		}
		took := time.Since(stopping)
		t.Logf("stopped in %s with a client not reading", took.Round(time.Millisecond))
		// The stuck client held the stop for the drain's 10 s: less, and the
		// socket buffers held the whole answer (this test then tests
		// nothing); much more, and the storage waited for clients of its own
		// (its close took 8 s more before they were closed first).
		if took < 9*time.Second || took > 14*time.Second {
			t.Errorf("the stop took %s; want the 10 s a client that stopped reading may hold it", took)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the server did not stop within a minute: the client that stopped reading held it")
	}
	// In production the process exits here: what the audit backend has not
	// sent by now is lost.
	creates := `"requestURI":"/apis/alumiini.false.systems/v1alpha1/namespaces/default/gitrepositories","verb":"create"`
	if sent := audited.count(creates); sent < largeRepos {
		t.Errorf("%d of %d creates reached the audit webhook by the end of the stop", sent, largeRepos)
	}
	stuck.Close() // lets the abandoned LIST end before the next server starts

	again := startServer(t, dataDir)
	repo, err := again.Client.AlumiiniV1alpha1().GitRepositories("default").Get(ctx, "large-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if repo.Status.PendingSyncRequest == nil || repo.Status.PendingSyncRequest.ID != pendingID {
		t.Errorf("after the stop the sync request %s is not queued: %+v", pendingID, repo.Status.PendingSyncRequest)
	}
}

// createLargeRepos creates GitRepositories large-0 ... of 230 KiB each: 64
// of them are 14 MiB, more than loopback socket buffers hold (4 MiB on the
// machines this was written on), so a LIST to a client that stops reading
// blocks writing.
func createLargeRepos(t *testing.T, ts *testServer, count int) {
	t.Helper()
	repos := ts.Client.AlumiiniV1alpha1().GitRepositories("default")
	padding := strings.Repeat("x", 230<<10)
	for i := range count {
		repo := newRepo(fmt.Sprintf("large-%d", i))
		repo.Annotations = map[string]string{"padding": padding}
		if _, err := repos.Create(context.Background(), repo, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// startWaitingSync asks for a sync of name with wait (no controller runs
// here, so it waits its full 30 s), and returns the request's id once it is
// recorded, and where its answer arrives.
func startWaitingSync(t *testing.T, ts *testServer, name string) (string, <-chan error) {
	t.Helper()
	ctx := context.Background()
	waited := make(chan error, 1)
	go func() {
		body := &v1alpha1.GitRepositorySyncRequest{Spec: v1alpha1.GitRepositorySyncRequestSpec{Wait: true, TimeoutSeconds: ptr.To[int32](30)}}
		waited <- ts.Client.AlumiiniV1alpha1().RESTClient().Post().Namespace("default").Resource("gitrepositories").
			Name(name).SubResource("sync").Body(body).MaxRetries(0).Do(ctx).Error()
	}()
	var id string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		repo, err := ts.Client.AlumiiniV1alpha1().GitRepositories("default").Get(ctx, name, metav1.GetOptions{})
		if err == nil && repo.Status.PendingSyncRequest != nil {
			id = repo.Status.PendingSyncRequest.ID
		}
		return id != "", nil
	})
	if err != nil {
		t.Fatalf("the sync request was not recorded: %v", err)
	}
	return id, waited
}

// auditSink is a loopback audit webhook and the files that point a server
// at it, with a policy recording every request's metadata.
type auditSink struct {
	kubeconfig, policy string
	mu                 sync.Mutex
	received           strings.Builder
}

func auditWebhook(t *testing.T) *auditSink {
	t.Helper()
	sink := &auditSink{}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sink.mu.Lock()
		defer sink.mu.Unlock()
		sink.received.Write(body)
	}))
	t.Cleanup(server.Close)
	dir := t.TempDir()
	sink.kubeconfig, sink.policy = filepath.Join(dir, "audit.kubeconfig"), filepath.Join(dir, "policy.yaml")
	kubeconfig := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: audit\n  cluster: {server: %q}\n"+
		"contexts:\n- name: audit\n  context: {cluster: audit, user: audit}\ncurrent-context: audit\nusers:\n- name: audit\n  user: {}\n", server.URL)
	policy := "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"
	for file, content := range map[string]string{sink.kubeconfig: kubeconfig, sink.policy: policy} {
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return sink
}

// count is how many times s occurs in what the webhook received.
func (a *auditSink) count(s string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Count(a.received.String(), s)
}

// listWithoutReading sends GET path over HTTP/1.1 on a connection with a
// small receive buffer, reads the status line, and then reads no more.
func listWithoutReading(t *testing.T, config *rest.Config, path string) net.Conn {
	t.Helper()
	tlsConfig, err := rest.TLSConfigFor(config)
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig.NextProtos = []string{"http/1.1"}
	host := strings.TrimPrefix(config.Host, "https://")
	dialer := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var sockErr error
		err := c.Control(func(fd uintptr) {
			sockErr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return sockErr
	}}
	raw, err := dialer.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	conn := tls.Client(raw, tlsConfig)
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nAccept: application/json\r\n\r\n", path, host, config.BearerToken)
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(status, "200") {
		t.Fatalf("listing: %q, %v", status, err)
	}
	return conn
}
