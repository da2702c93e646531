package install

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/falsesystems/alumiini/test/gitserver"
	"github.com/falsesystems/alumiini/test/localcluster"
)

// TestTwoReplicasOverAnExternalEtcd runs artifacts/overlays/external-etcd
// as its two pods would: both serve the API from one external etcd (TLS,
// client certificates), one leads and syncs, a push that reaches the other
// is handed to the leader; when the leader stops the other takes over at
// once, and when the leader is killed, once its Lease expires. cert-manager cannot run here: the test does what it and its CA
// injector would (a CA-signed serving certificate in the mounted files, the
// CA in the APIService's caBundle) and applies the rest of the overlay.
func TestTwoReplicasOverAnExternalEtcd(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	etcd, err := cluster.StartExternalEtcd(ctx, filepath.Join(dir, "etcd"))
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Stop()
	caPEM, replica := applyReplicaOverlay(t, "external-etcd", dir, etcd)
	first, _ := replica("alumiini-0", freePort(t), nil)
	defer first.stop()
	waitForLeader(t, first)
	port := freePort(t)
	second, secondWebhook := replica("alumiini-1", port, nil)
	defer second.stop()
	defer func() {
		if t.Failed() {
			t.Logf("alumiini-0's log:\n%s\nalumiini-1's log:\n%s", first.log(), second.log())
		}
	}()

	// The aggregator reaches the second replica, which does not lead.
	serveAPIFrom(t, port, caPEM)
	waitForAPI(t, second)

	git, err := gitserver.Start(t.TempDir(), "127.0.0.1:0", gitserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer git.Close()
	commit := func(value string) string {
		t.Helper()
		sha, err := git.Commit(ctx, "ha", "main", map[string]gitserver.File{
			"deploy/cm.yaml": {Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: replicated\ndata:\n  value: " + value + "\n"}})
		if err != nil {
			t.Fatal(err)
		}
		return sha
	}
	commit("one")
	kubectl(t, `apiVersion: v1
kind: Namespace
metadata: {name: ha}
---
apiVersion: v1
kind: Secret
metadata: {name: hook, namespace: ha}
stringData: {token: replicated-secret}
---
apiVersion: alumiini.false.systems/v1alpha1
kind: GitRepository
metadata: {name: app, namespace: ha}
spec:
  url: `+git.BaseURL()+`/ha.git
  path: deploy
  webhook: {secretRef: {name: hook}}
`, "apply", "-f", "-")
	waitForValue(t, "one", first)

	// A push to the replica that does not lead syncs through the leader,
	// long before the 5-minute interval.
	sha := commit("two")
	push := func() { signedPush(t, secondWebhook, "replicated-secret", git.BaseURL()+"/ha.git", sha) }
	push()
	waitForValue(t, "two", first, second)
	// The same delivery again (a replay) costs the leader a listing, not an
	// apply: the request is answered as up to date.
	push()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := kubectl(t, "", "get", "gitrepository", "app", "-n", "ha", "-o", "jsonpath={.status.lastSyncRequest.result.message}")
		if strings.HasPrefix(got, "up to date") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a replayed push was not answered as up to date: %q", got)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if strings.Contains(second.log(), leadingLine) {
		t.Fatal("both replicas lead")
	}
	events := kubectl(t, "", "get", "events", "-n", "ha", "--field-selector", "involvedObject.name=app,reason=PushReceived",
		"-o", "jsonpath={.items[*].message}")
	if !strings.Contains(events, "handed to the replica that syncs it") {
		t.Errorf("no PushReceived Event says the push was handed over: %q", events)
	}

	// The leader stops (a rollout, a drain): it releases the Lease once its
	// workers have stopped, and the other replica leads within a retry
	// period, not the lease duration.
	stopping := time.Now()
	first.stop()
	waitForLeader(t, second)
	took := time.Since(stopping)
	t.Logf("the other replica led %s after the leader began to stop (lease 15 s, retry 2 s)", took.Round(100*time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("the other replica led %s after the leader began to stop: the stopped leader kept its Lease", took)
	}
	syncNow := func(value string) {
		t.Helper()
		commit(value)
		// Retried while the aggregator moves to the replica left running.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
			out, err := cluster.KubectlInput(ctx, "{}", "create", "--raw", "/apis/alumiini.false.systems/v1alpha1/namespaces/ha/gitrepositories/app/sync", "-f", "-")
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("a sync request for %q: %v %s", value, err, out)
			}
		}
	}
	syncNow("three")
	waitForValue(t, "three", second)

	// The leader dies: the other replica takes the Lease over once it
	// expires, and syncs.
	firstPort := freePort(t)
	first, _ = replica("alumiini-0", firstPort, nil)
	defer first.stop()
	serveAPIFrom(t, firstPort, caPEM)
	waitForAPI(t, first)
	second.kill()
	killed := time.Now()
	waitForLeader(t, first)
	t.Logf("the other replica led %s after the leader was killed (lease 15 s, retry 2 s)", time.Since(killed).Round(100*time.Millisecond))
	syncNow("four")
	waitForValue(t, "four", first)
}

// replicaStarter starts one replica as its pod would, on a port of its own,
// with extra flags; it returns the process and its webhook port.
type replicaStarter func(name string, port int, extra map[string]string) (*process, int)

// applyReplicaOverlay applies artifacts/overlays/overlay over an external
// etcd as a user moving from the base would, and does what cert-manager
// and its CA injector would: one CA-signed serving certificate for every
// replica, for the names the overlay's Certificate asks for. It returns the
// CA and how to start a replica.
// With etcd nil, the replicas run their embedded etcd (extra flags say how).
func applyReplicaOverlay(t *testing.T, overlay, dir string, etcd *localcluster.ExternalEtcd) ([]byte, replicaStarter) {
	t.Helper()
	rendered := kubectl(t, "", "kustomize", filepath.Join(localcluster.RepoRoot(), "artifacts/overlays", overlay))
	var kept []string
	for _, doc := range strings.Split(rendered, "\n---\n") {
		if !strings.Contains(doc, "apiVersion: cert-manager.io/") {
			kept = append(kept, doc)
		}
	}
	manifest := strings.Join(kept, "\n---\n")
	kubectl(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: alumiini-system\n", "apply", "-f", "-")
	// Moving from the base to this overlay, as a user would: the StatefulSet
	// loses its volumeClaimTemplates, which only a new StatefulSet can.
	kubectl(t, "", "delete", "statefulset,service", "alumiini", "-n", "alumiini-system", "--ignore-not-found")
	kubectl(t, "", "delete", "apiservice", "v1alpha1.alumiini.false.systems", "--ignore-not-found")
	kubectl(t, manifest, "apply", "--server-side", "--dry-run=server", "-f", "-")
	kubectl(t, manifest, "apply", "--server-side", "-f", "-")

	ca, err := localcluster.NewCertificateAuthority(filepath.Join(dir, "pki"), "serving-ca")
	if err != nil {
		t.Fatal(err)
	}
	names := certificateNames(t, rendered, "alumiini-serving-cert")
	serving, err := ca.Issue("serving", names[0], append(names, "localhost"), []net.IP{net.ParseIP("127.0.0.1")}, true)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(ca.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	start := func(name string, port int, extra map[string]string) (*process, int) {
		state := filepath.Join(dir, name)
		webhookPort := freePort(t)
		flags := map[string]string{
			"--secure-port": strconv.Itoa(port), "--bind-address": "127.0.0.1",
			"--git-cache-dir": filepath.Join(state, "git"),
			"--tls-cert-file": serving.CertFile, "--tls-private-key-file": serving.KeyFile,
			"--webhook-bind-address": "127.0.0.1:" + strconv.Itoa(webhookPort), "--metrics-bind-address": "127.0.0.1:0",
		}
		if etcd != nil {
			flags["--etcd-servers"], flags["--etcd-cafile"] = etcd.URL, etcd.CAFile
			flags["--etcd-certfile"], flags["--etcd-keyfile"] = etcd.CertFile, etcd.KeyFile
		}
		for k, v := range extra {
			flags[k] = v
		}
		return startAsThePod(t, manifest, name, flags), webhookPort
	}
	return caPEM, start
}

// signedPush sends a generic push webhook for url at commit sha to the
// webhook receiver on port, signed with secret, and fails unless answered 200.
func signedPush(t *testing.T, port int, secret, url, sha string) {
	t.Helper()
	body := fmt.Sprintf(`{"url":%q,"ref":"main","after":%q}`, url, sha)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(body))
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/hooks/generic", port), bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the push to port %d: %d %s", port, resp.StatusCode, answer)
	}
}

const leadingLine = "Leading: this replica runs the workers"

// waitForLeader waits until p says, in its log, that it runs the workers:
// within the lease duration (15 s) and a retry period of the last leader's
// death, with room for a slow machine.
func waitForLeader(t *testing.T, p *process) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for !strings.Contains(p.log(), leadingLine) {
		if time.Now().After(deadline) {
			t.Fatalf("the replica did not lead; its log:\n%s", p.log())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitForValue waits until the synced ConfigMap holds want.
func waitForValue(t *testing.T, want string, replicas ...*process) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := cluster.Kubectl(context.Background(), "get", "configmap", "replicated", "-n", "ha", "-o", "jsonpath={.data.value}")
		if string(out) == want {
			return
		}
		if time.Now().After(deadline) {
			var logs []string
			for _, p := range replicas {
				logs = append(logs, p.log())
			}
			status, _ := cluster.Kubectl(context.Background(), "get", "gitrepository", "app", "-n", "ha", "-o", "yaml")
			t.Fatalf("the ConfigMap holds %q, want %q\n%s\nlogs:\n%s", out, want, status, strings.Join(logs, "\n----\n"))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// certificateNames returns the dnsNames of the rendered cert-manager
// Certificate name.
func certificateNames(t *testing.T, manifest, name string) []string {
	t.Helper()
	for _, doc := range strings.Split(manifest, "\n---\n") {
		var cert struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				DNSNames []string `json:"dnsNames"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &cert); err == nil && cert.Kind == "Certificate" && cert.Metadata.Name == name {
			if len(cert.Spec.DNSNames) == 0 {
				t.Fatalf("the Certificate %s names no DNS names", name)
			}
			return cert.Spec.DNSNames
		}
	}
	t.Fatalf("the manifest has no Certificate %s", name)
	return nil
}
