package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/falsesystems/alumiini/test/gitserver"
)

// TestAStopLetsASyncThatIsWritingFinish: alumiini stops (a rollout, a node
// drain) while a sync is between its writes. The sync finishes, every
// object of its commit applied and its outcome written, rather than leaving
// the commit applied in part until the next process syncs it again. An
// admission webhook holds the sync's first writes until the stop has
// begun; before the change, the stop cancelled them and the writes after.
func TestAStopLetsASyncThatIsWritingFinish(t *testing.T) {
	const name, objects = "stop-writes", 20
	createNamespace(t, name)
	files := map[string]gitserver.File{}
	for i := range objects {
		files[fmt.Sprintf("deploy/cm-%02d.yaml", i)] = gitserver.File{
			Content: fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: part-%02d\n", i)}
	}
	commit := pushRepository(t, name, files)
	firstWrite, release := holdWrites(t, name)
	kubectlInput(t, gitRepository(name, name, name, ""), "apply", "-f", "-")
	t.Cleanup(func() {
		_, _ = cluster.Kubectl(context.Background(), "delete", "gitrepository", name, "--timeout=60s")
	})
	select {
	case <-firstWrite:
	case <-time.After(time.Minute):
		t.Fatal("no write of the sync reached the admission webhook")
	}

	stopping := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- cluster.StopAlumiini() }()
	time.Sleep(time.Second) // the stop has begun; it cancelled the sync's requests here before
	release()
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	took := time.Since(stopping)
	t.Logf("stopped in %s, a sync writing", took.Round(time.Millisecond))
	if took > 20*time.Second {
		t.Errorf("the stop took %s, too close to a pod's 30 s grace period", took)
	}
	written := strings.Fields(kubectl(t, "get", "configmaps", "-n", name, "-l", "alumiini.false.systems/name="+name, "-o", "name"))
	if len(written) != objects {
		t.Errorf("after the stop %d of the commit's %d ConfigMaps exist: %v", len(written), objects, written)
	}
	log, err := os.ReadFile(cluster.LogPath("alumiini"))
	if err != nil {
		t.Fatal(err)
	}
	if !hasRecord(string(log), `"Synced"`, `gitRepository="default/`+name+`"`, `commit="`+commit+`"`) {
		t.Errorf("the stopped process did not log the sync of %s as Synced", commit)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cluster.StartAlumiini(ctx); err != nil {
		t.Fatal(err)
	}
	if got := kubectl(t, "get", "gitrepository", name, "-o", "jsonpath={.status.inventory.entries[*].name}"); len(strings.Fields(got)) != objects {
		t.Errorf("the inventory after the restart: %q, want the %d ConfigMaps", got, objects)
	}
}

// hasRecord reports whether one of log's records holds every part.
func hasRecord(log string, parts ...string) bool {
	return slices.ContainsFunc(logRecords(log), func(record string) bool {
		return !slices.ContainsFunc(parts, func(part string) bool { return !strings.Contains(record, part) })
	})
}

// holdWrites registers a validating admission webhook on loopback for
// ConfigMap creates in namespace: it lets dry-runs through at once, and
// holds writes until release is called. firstWrite is closed when the first
// write arrives.
func holdWrites(t *testing.T, namespace string) (firstWrite <-chan struct{}, release func()) {
	t.Helper()
	tlsConfig, ca, err := gitserver.NewTLS()
	if err != nil {
		t.Fatal(err)
	}
	arrived, released := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var dryRuns atomic.Int64
	server := &http.Server{TLSConfig: tlsConfig, ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var review admissionv1.AdmissionReview
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<20)).Decode(&review); err != nil || review.Request == nil {
				http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
				return
			}
			if dryRun := review.Request.DryRun; dryRun != nil && *dryRun {
				dryRuns.Add(1)
			} else {
				once.Do(func() { close(arrived) })
				select {
				case <-released:
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
	releaseOnce := sync.OnceFunc(func() { close(released) })
	t.Cleanup(func() {
		releaseOnce()
		_, _ = cluster.Kubectl(context.Background(), "delete", "validatingwebhookconfiguration", config)
		_ = server.Close()
	})
	// kube-apiserver calls a new webhook once its informer has it: a
	// dry-run of a ConfigMap in namespace shows when it does.
	probe := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n  namespace: " + namespace + "\n"
	eventually(t, 30*time.Second, func() string {
		out, err := cluster.KubectlInput(context.Background(), probe, "create", "--dry-run=server", "-f", "-")
		if dryRuns.Load() == 0 {
			return fmt.Sprintf("the webhook saw no dry-run yet: %s %v", out, err)
		}
		return ""
	})
	return arrived, releaseOnce
}
