package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/falsesystems/alumiini/test/gitserver"
)

// TestAStopLetsASyncThatIsWritingFinish: alumiini stops (a rollout, a node
// drain) while a sync asked for by a waiting client is between its writes.
// The sync finishes, every object of its commit applied and its outcome
// written, and the client gets its result, rather than the commit staying
// applied in part until the next process syncs it again. An admission
// webhook holds the sync's first writes until the stop has begun; before
// the change, the stop cancelled them and the writes after.
func TestAStopLetsASyncThatIsWritingFinish(t *testing.T) {
	const name, objects = "stop-writes", 20
	createNamespace(t, name)
	configMap := func(i int) (string, gitserver.File) {
		return fmt.Sprintf("deploy/cm-%02d.yaml", i),
			gitserver.File{Content: fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: part-%02d\n", i)}
	}
	path, file := configMap(0)
	pushRepository(t, name, map[string]gitserver.File{path: file})
	hold := holdWrites(t, name)
	kubectlInput(t, gitRepository(name, name, name, ""), "apply", "-f", "-")
	t.Cleanup(func() {
		_, _ = cluster.Kubectl(context.Background(), "delete", "gitrepository", name, "--timeout=60s")
	})
	kubectl(t, "wait", "--for=condition=Ready", "gitrepository/"+name, "--timeout=60s")

	files := map[string]gitserver.File{}
	for i := range objects {
		path, file := configMap(i)
		files[path] = file
	}
	commit := pushRepository(t, name, files)
	hold.arm()
	answered := make(chan string, 1)
	go func() {
		out, err := cluster.KubectlInput(context.Background(), `{"spec":{"wait":true,"timeoutSeconds":30}}`,
			"create", "--raw", syncPath(name), "-f", "-")
		answered <- fmt.Sprintf("%s %v", out, err)
	}()
	select {
	case <-hold.arrived:
	case got := <-answered:
		t.Fatalf("the sync request was answered before any write: %s", got)
	case <-time.After(time.Minute):
		t.Fatal("no write of the sync reached the admission webhook")
	}

	stopsBefore := stopsLogged(t)
	stopping := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- cluster.StopAlumiini() }()
	eventually(t, 10*time.Second, func() string {
		if stopsLogged(t) == stopsBefore {
			return "alumiini's log does not say its stop began"
		}
		return ""
	})
	hold.release()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	stoppedAt := time.Now()
	took := stoppedAt.Sub(stopping)
	t.Logf("stopped in %s, a sync writing", took.Round(time.Millisecond))
	if took > 20*time.Second {
		t.Errorf("the stop took %s, too close to a pod's 30 s grace period", took)
	}
	if got := <-answered; !strings.Contains(got, `"phase":"Synced"`) || !strings.Contains(got, commit) {
		t.Errorf("the client waiting on the sync got %s, want its result: Synced, commit %s", got, commit)
	}
	written := strings.Fields(kubectl(t, "get", "configmaps", "-n", name, "-l", "alumiini.false.systems/name="+name, "-o", "name"))
	if len(written) != objects {
		t.Errorf("after the stop %d of the commit's %d ConfigMaps exist: %v", len(written), objects, written)
	}

	time.Sleep(1100 * time.Millisecond) // status times are whole seconds: the restarted process's come later
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cluster.StartAlumiini(ctx); err != nil {
		t.Fatal(err)
	}
	status := kubectl(t, "get", "gitrepository", name, "-o", "jsonpath={.status.lastSyncedCommit} {.status.lastSyncTime}")
	synced, at, _ := strings.Cut(status, " ")
	if when, err := time.Parse(time.RFC3339, at); synced != commit || err != nil || when.After(stoppedAt) {
		t.Errorf("status after the restart: %q; want commit %s, written by %s by the stopped process", status, commit,
			stoppedAt.UTC().Format(time.RFC3339))
	}
}

// stopsLogged counts the stops alumiini's log shows begun.
func stopsLogged(t *testing.T) int {
	t.Helper()
	log, err := os.ReadFile(cluster.LogPath("alumiini"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(log), `"Stopping: syncs that have not begun writing end`)
}

// writeHold is a validating admission webhook on loopback for ConfigMap
// creates in one namespace: it lets every request through at once, until
// armed; then it lets dry-runs through and holds writes until released.
// arrived is closed when the first write arrives armed.
type writeHold struct {
	armed             atomic.Bool
	arrived, released chan struct{}
	arrive, release   func()
}

func (h *writeHold) arm() { h.armed.Store(true) }

func holdWrites(t *testing.T, namespace string) *writeHold {
	t.Helper()
	tlsConfig, ca, err := gitserver.NewTLS()
	if err != nil {
		t.Fatal(err)
	}
	h := &writeHold{arrived: make(chan struct{}), released: make(chan struct{})}
	h.arrive = sync.OnceFunc(func() { close(h.arrived) })
	h.release = sync.OnceFunc(func() { close(h.released) })
	var seen atomic.Int64
	server := &http.Server{TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var review admissionv1.AdmissionReview
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20)).Decode(&review); err != nil || review.Request == nil {
				http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
				return
			}
			seen.Add(1)
			if dryRun := review.Request.DryRun; h.armed.Load() && (dryRun == nil || !*dryRun) {
				h.arrive()
				select {
				case <-h.released:
				case <-r.Context().Done():
				}
			}
			review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
			review.Request = nil
			_ = json.NewEncoder(w).Encode(review)
		})}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = server.ServeTLS(listener, "", "") }()
	config := "hold-writes-" + namespace
	kubectlInput(t, `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: `+config+`
webhooks:
- name: hold-writes.alumiini.test
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 30
  clientConfig:
    url: https://`+listener.Addr().String()+`/hold
    caBundle: `+base64.StdEncoding.EncodeToString(ca)+`
  namespaceSelector:
    matchLabels: {kubernetes.io/metadata.name: `+namespace+`}
  rules:
  - {apiGroups: [""], apiVersions: [v1], resources: [configmaps], operations: [CREATE], scope: Namespaced}
`, "apply", "-f", "-")
	t.Cleanup(func() {
		h.release()
		_, _ = cluster.Kubectl(context.Background(), "delete", "validatingwebhookconfiguration", config)
		_ = server.Close()
	})
	// kube-apiserver calls a new webhook once its informer has it: a
	// dry-run of a ConfigMap in namespace shows when it does.
	probe := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n  namespace: " + namespace + "\n"
	eventually(t, 30*time.Second, func() string {
		out, err := cluster.KubectlInput(context.Background(), probe, "create", "--dry-run=server", "-f", "-")
		if seen.Load() == 0 {
			return fmt.Sprintf("the webhook saw no request yet: %s %v", out, err)
		}
		return ""
	})
	return h
}
