package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/falsesystems/alumiini/pkg/cmd/server"
	"github.com/falsesystems/alumiini/test/freeport"
	"github.com/falsesystems/alumiini/test/localcluster"
)

// TestExternalEtcd runs the server against a separate etcd process given with
// --etcd-servers, and checks that objects land there (they survive a
// server restart with no embedded etcd anywhere), and that /readyz fails,
// naming etcd, once that etcd is gone: a replica that cannot store takes no
// traffic.
func TestExternalEtcd(t *testing.T) {
	root := localcluster.RepoRoot()
	out, err := exec.Command(filepath.Join(root, "hack/build-tools.sh")).Output()
	if err != nil {
		t.Fatalf("building etcd: %v", err)
	}
	etcdBinary := filepath.Join(strings.TrimSpace(string(out)), "etcd")
	ports := make([]int, 2)
	for i := range ports {
		if ports[i], err = freeport.Loopback(); err != nil {
			t.Fatal(err)
		}
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	etcd := exec.Command(etcdBinary, "--data-dir", t.TempDir(), "--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "default="+peer,
		"--unsafe-no-fsync", "--log-level", "error")
	etcd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = etcd.Process.Kill(); _ = etcd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get(client + "/health"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("etcd did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}

	external := func(o *server.Options) {
		o.RecommendedOptions.Etcd.StorageConfig.Transport.ServerList = []string{client}
		o.EtcdDataDir = "" // proves the embedded etcd is not used
	}
	ctx := context.Background()
	first := startServerWith(t, external)
	if _, err := first.Client.AlumiiniV1alpha1().GitRepositories("default").Create(ctx, newRepo("kept"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	first.Stop(t)
	second := startServerWith(t, external)
	if _, err := second.Client.AlumiiniV1alpha1().GitRepositories("default").Get(ctx, "kept", metav1.GetOptions{}); err != nil {
		t.Fatalf("after a restart on the external etcd: %v", err)
	}

	_ = etcd.Process.Kill()
	_ = etcd.Wait()
	var code int
	var body []byte
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		result := second.Client.Discovery().RESTClient().Get().AbsPath("/readyz").Param("verbose", "").Do(ctx)
		body, _ = result.Raw()
		result.StatusCode(&code)
		return code == http.StatusInternalServerError && strings.Contains(string(body), "[-]etcd"), nil
	})
	if err != nil {
		t.Errorf("/readyz with its etcd gone: %d %v\n%s", code, err, body)
	}
	// The liveness probe's path leaves etcd out: a restart would not bring
	// the etcd back, so the process is not restarted for it.
	result := second.Client.Discovery().RESTClient().Get().AbsPath("/livez").Param("exclude", "etcd").Do(ctx)
	result.StatusCode(&code)
	if body, err := result.Raw(); code != http.StatusOK {
		t.Errorf("/livez?exclude=etcd with its etcd gone: %d %v %s", code, err, body)
	}
}
