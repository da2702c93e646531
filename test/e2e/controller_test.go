package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/test/gitserver"
)

// pushRepository commits files to NAME.git on the cluster's git server.
func pushRepository(t *testing.T, name string, files map[string]gitserver.File, remove ...string) string {
	t.Helper()
	sha, err := cluster.Git.Commit(context.Background(), name, "main", files, remove...)
	if err != nil {
		t.Fatal(err)
	}
	return sha
}

func gitRepository(name, repo, targetNamespace string, extra string) string {
	return `apiVersion: alumiini.false.systems/v1alpha1
kind: GitRepository
metadata:
  name: ` + name + `
spec:
  url: ` + cluster.Git.BaseURL() + `/` + repo + `.git
  path: deploy
  interval: 1m
  targetNamespace: ` + targetNamespace + `
` + extra
}

func syncAndWait(t *testing.T, name string) v1alpha1.GitRepositorySyncRequest {
	t.Helper()
	body := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(body, []byte(`{"spec":{"wait":true,"timeoutSeconds":25}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := kubectl(t, "create", "--raw", syncPath(name), "-f", body)
	var answer v1alpha1.GitRepositorySyncRequest
	if err := json.Unmarshal([]byte(out), &answer); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return answer
}

func createNamespace(t *testing.T, name string) {
	t.Helper()
	kubectlInput(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+name+"\n", "apply", "-f", "-")
}

// readyRepository creates namespace name, a repository name.git holding the
// ConfigMap "settings" (version 1), and a GitRepository name syncing it into
// that namespace, and waits until it is Ready.
func readyRepository(t *testing.T, name, extraSpec string) {
	t.Helper()
	createNamespace(t, name)
	pushRepository(t, name, map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	kubectlInput(t, gitRepository(name, name, name, extraSpec), "apply", "-f", "-")
	kubectl(t, "wait", "--for=condition=Ready", "gitrepository/"+name, "--timeout=60s")
}

const configMapV1 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  version: \"1\"\n"

func TestSyncPushPruneAndDelete(t *testing.T) {
	createNamespace(t, "lifecycle")
	first := pushRepository(t, "lifecycle", map[string]gitserver.File{
		"deploy/cm.yaml": {Content: configMapV1},
		"deploy/sa.yaml": {Content: "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: runner\n"},
	})
	kubectlInput(t, gitRepository("lifecycle", "lifecycle", "lifecycle", ""), "apply", "-f", "-")
	start := time.Now()
	kubectl(t, "wait", "--for=condition=Ready", "gitrepository/lifecycle", "--timeout=60s")
	t.Logf("created to Ready in %s", time.Since(start).Round(time.Millisecond))
	if got := kubectl(t, "get", "gitrepository", "lifecycle", "-o", "jsonpath={.status.lastSyncedCommit}"); got != first {
		t.Errorf("lastSyncedCommit %s, want %s", got, first)
	}
	if got := kubectl(t, "get", "configmap", "settings", "-n", "lifecycle", "-o", "jsonpath={.metadata.labels.alumiini\\.false\\.systems/name}"); got != "lifecycle" {
		t.Errorf("the applied ConfigMap's owner label is %q", got)
	}

	// A push, then a sync with wait: the answer carries the result.
	second := pushRepository(t, "lifecycle", map[string]gitserver.File{
		"deploy/cm.yaml": {Content: strings.Replace(configMapV1, `"1"`, `"2"`, 1)},
	}, "deploy/sa.yaml")
	answer := syncAndWait(t, "lifecycle")
	if answer.Status.Phase != v1alpha1.PhaseSynced || answer.Status.Commit != second || answer.Status.Objects == nil ||
		answer.Status.Objects.Configured != 1 || answer.Status.Objects.Pruned != 1 {
		t.Fatalf("sync after a push: %+v", answer.Status)
	}
	if got := kubectl(t, "get", "configmap", "settings", "-n", "lifecycle", "-o", "jsonpath={.data.version}"); got != "2" {
		t.Errorf("the ConfigMap was not updated: %q", got)
	}
	if _, err := cluster.Kubectl(context.Background(), "get", "serviceaccount", "runner", "-n", "lifecycle"); err == nil {
		t.Error("the ServiceAccount removed from git was not pruned")
	}

	// Deleting the GitRepository (prune: true) deletes what it applied.
	kubectl(t, "delete", "gitrepository", "lifecycle", "--timeout=60s")
	if _, err := cluster.Kubectl(context.Background(), "get", "configmap", "settings", "-n", "lifecycle"); err == nil {
		t.Error("the ConfigMap outlived its GitRepository")
	}
}

func TestBadCommitKeepsTheLastGoodState(t *testing.T) {
	readyRepository(t, "badcommit", "")

	// One good change and one object the API refuses: nothing is applied.
	pushRepository(t, "badcommit", map[string]gitserver.File{
		"deploy/cm.yaml":  {Content: strings.Replace(configMapV1, `"1"`, `"2"`, 1)},
		"deploy/svc.yaml": {Content: "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  ports:\n  - port: 99999\n"},
	})
	answer := syncAndWait(t, "badcommit")
	if answer.Status.Phase != v1alpha1.PhaseFailed || !strings.Contains(answer.Status.Message, "Service badcommit/broken") ||
		!strings.Contains(answer.Status.Message, "svc.yaml") {
		t.Fatalf("a refused object: %+v", answer.Status)
	}
	if got := kubectl(t, "get", "configmap", "settings", "-n", "badcommit", "-o", "jsonpath={.data.version}"); got != "1" {
		t.Errorf("the good half of a failed commit was applied: version %q", got)
	}
	ready := kubectl(t, "get", "gitrepository", "badcommit", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	if ready != "False" {
		t.Errorf("Ready is %q after a failed sync", ready)
	}

	// Invalid YAML names the file and line.
	pushRepository(t, "badcommit", map[string]gitserver.File{"deploy/svc.yaml": {Content: "kind: [oops\n"}})
	answer = syncAndWait(t, "badcommit")
	if answer.Status.Phase != v1alpha1.PhaseFailed || !strings.Contains(answer.Status.Message, "svc.yaml") {
		t.Fatalf("invalid YAML: %+v", answer.Status)
	}
	kubectl(t, "delete", "gitrepository", "badcommit", "--timeout=60s")
}

func TestMissingSecretAndSuspend(t *testing.T) {
	pushRepository(t, "secretive", map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	// An ssh:// URL: credentials never go over the local server's http://,
	// and the missing Secret is found before any connection is made.
	missing := strings.Replace(gitRepository("secretive", "secretive", "default", "  secretRef:\n    name: no-such-secret\n"),
		"url: "+cluster.Git.BaseURL(), "url: ssh://git@127.0.0.1:1", 1)
	kubectlInput(t, missing, "apply", "-f", "-")
	deadline := time.Now().Add(30 * time.Second)
	var message string
	for time.Now().Before(deadline) {
		message = kubectl(t, "get", "gitrepository", "secretive", "-o", "jsonpath={.status.message}")
		if message != "" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(message, `secret "no-such-secret"`) {
		t.Errorf("a missing secret: status message %q", message)
	}

	kubectl(t, "patch", "gitrepository", "secretive", "--type=merge", "-p", `{"spec":{"suspend":true}}`)
	deadline = time.Now().Add(30 * time.Second)
	phase := ""
	for time.Now().Before(deadline) && phase != "Suspended" {
		phase = kubectl(t, "get", "gitrepository", "secretive", "-o", "jsonpath={.status.phase}")
		time.Sleep(200 * time.Millisecond)
	}
	if phase != "Suspended" {
		t.Errorf("phase %q after suspend", phase)
	}
	stderr := kubectlFails(t, "{}", "create", "--raw", syncPath("secretive"), "-f", "-")
	if !strings.Contains(stderr, "suspended") {
		t.Errorf("sync of a suspended GitRepository: %s", stderr)
	}
	kubectl(t, "delete", "gitrepository", "secretive", "--timeout=60s")
}

func TestServiceAccountConfinesWhatIsApplied(t *testing.T) {
	createNamespace(t, "tenant")
	kubectlInput(t, "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: deployer\n  namespace: default\n", "apply", "-f", "-")
	pushRepository(t, "tenant", map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	kubectlInput(t, gitRepository("tenant", "tenant", "tenant", "  serviceAccountName: deployer\n"), "apply", "-f", "-")
	answer := syncAndWait(t, "tenant")
	if answer.Status.Phase != v1alpha1.PhaseFailed || !strings.Contains(answer.Status.Message, "system:serviceaccount:default:deployer") {
		t.Fatalf("applying as an account without rights: %+v", answer.Status)
	}
	// Let it manage ConfigMaps in the tenant namespace: the sync goes through.
	grantConfigMaps(t, "tenant", "default", "deployer")
	var last v1alpha1.GitRepositorySyncRequest
	for i := 0; i < 40; i++ {
		if last = syncAndWait(t, "tenant"); last.Status.Phase == v1alpha1.PhaseSynced {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if last.Status.Phase != v1alpha1.PhaseSynced {
		t.Fatalf("with edit in its namespace: %+v", last.Status)
	}
	kubectl(t, "delete", "gitrepository", "tenant", "--timeout=60s")
}

func TestDeleteWithoutPruneLeavesTheObjects(t *testing.T) {
	readyRepository(t, "keeper", "  prune: false\n")
	if got := kubectl(t, "get", "gitrepository", "keeper", "-o", "jsonpath={.metadata.finalizers}"); got != "" {
		t.Errorf("a GitRepository with prune: false has finalizers %s", got)
	}
	kubectl(t, "delete", "gitrepository", "keeper", "--timeout=60s")
	if got := kubectl(t, "get", "configmap", "settings", "-n", "keeper", "-o", "jsonpath={.data.version}"); got != "1" {
		t.Errorf("deleting a GitRepository with prune: false removed what it applied")
	}
}

// TestSIGTERMLosesNothing stops the real alumiini process with SIGTERM and
// starts it again on the same data directory: every GitRepository and its
// status is there, and the restarted controller finds nothing to re-apply.
func TestSIGTERMLosesNothing(t *testing.T) {
	readyRepository(t, "restart", "")
	before := kubectl(t, "get", "gitrepository", "restart", "-o", "jsonpath={.status.lastSyncedCommit} {.status.lastSyncTime}")
	cmVersion := kubectl(t, "get", "configmap", "settings", "-n", "restart", "-o", "jsonpath={.metadata.resourceVersion}")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A watch open through kube-apiserver, as kubectl get -w or kubectl
	// delete --wait hold one, must not keep alumiini from stopping.
	watching, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	go func() { _, _ = cluster.Kubectl(watching, "get", "gitrepositories", "--watch") }()
	time.Sleep(time.Second)
	stopping := time.Now()
	if err := cluster.RestartAlumiini(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped and started again, a watch open, in %s", time.Since(stopping).Round(time.Millisecond))
	after := kubectl(t, "get", "gitrepository", "restart", "-o", "jsonpath={.status.lastSyncedCommit} {.status.lastSyncTime}")
	if after != before {
		t.Errorf("status after the restart %q, before %q", after, before)
	}
	// Give the restarted controller a round: the ConfigMap must not be written again.
	answer := syncAndWait(t, "restart")
	if answer.Status.Phase != v1alpha1.PhaseSynced || answer.Status.Objects == nil || answer.Status.Objects.Unchanged != 1 {
		t.Errorf("the first sync after a restart: %+v", answer.Status)
	}
	if got := kubectl(t, "get", "configmap", "settings", "-n", "restart", "-o", "jsonpath={.metadata.resourceVersion}"); got != cmVersion {
		t.Errorf("the restart rewrote an unchanged object: resourceVersion %s -> %s", cmVersion, got)
	}
	kubectl(t, "delete", "gitrepository", "restart", "--timeout=60s")
}

// TestAStopAnswersWaitingSyncRequests: a CI job waiting on a sync request
// (kubectl create --raw .../sync with wait) while alumiini stops, here
// behind a sync stalled on its git server, is told at once that the request
// stays queued, rather than holding the stop past a pod's grace period or
// losing its connection; the restarted process still has the request.
func TestAStopAnswersWaitingSyncRequests(t *testing.T) {
	createNamespace(t, "stop-waits")
	stalled := hostileGitServers(t)["stalled"]
	repo := strings.Replace(gitRepository("stop-waits", "stop-waits", "stop-waits", "  timeout: 5m\n"),
		"url: "+cluster.Git.BaseURL()+"/stop-waits.git", "url: "+stalled, 1)
	kubectlInput(t, repo, "apply", "-f", "-")
	t.Cleanup(func() {
		_, _ = cluster.Kubectl(context.Background(), "delete", "gitrepository", "stop-waits", "--timeout=60s")
	})
	// The first sync lists the branch and stalls fetching it; a sync request
	// then queues behind it, pending.
	time.Sleep(2 * time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type answer struct {
		out string
		err error
		at  time.Time
	}
	answered := make(chan answer, 1)
	go func() {
		out, err := cluster.KubectlInput(ctx, `{"spec":{"wait":true,"timeoutSeconds":30}}`, "create", "--raw", syncPath("stop-waits"), "-f", "-")
		answered <- answer{string(out), err, time.Now()}
	}()
	var pending string
	eventually(t, 20*time.Second, func() string {
		if pending = kubectl(t, "get", "gitrepository", "stop-waits", "-o", "jsonpath={.status.pendingSyncRequest.id}"); pending == "" {
			select {
			case got := <-answered:
				t.Fatalf("kubectl ended before the stop: %s %v", got.out, got.err)
			default:
			}
			return "no sync request pending: " + kubectl(t, "get", "gitrepository", "stop-waits", "-o", "jsonpath={.status}")
		}
		return ""
	})
	time.Sleep(time.Second) // recorded before the wait begins: let kubectl's wait begin

	stopping := time.Now()
	if err := cluster.StopAlumiini(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %s with a sync request waiting", time.Since(stopping).Round(time.Millisecond))
	if took := time.Since(stopping); took > 20*time.Second {
		t.Errorf("the stop took %s, too close to a pod's 30 s grace period", took)
	}
	if err := cluster.StartAlumiini(ctx); err != nil {
		t.Fatal(err)
	}
	got := <-answered
	if got.err == nil || !strings.Contains(got.err.Error(), "alumiini replica is stopping") || !strings.Contains(got.err.Error(), pending) {
		t.Errorf("the waiting kubectl got %q, %v; want an error saying alumiini stops and naming request %s", got.out, got.err, pending)
	}
	t.Logf("kubectl was answered %s after the stop began: %v", got.at.Sub(stopping).Round(time.Millisecond), got.err)
	// At once, unless another test's sync was writing: the stop lets it
	// finish first, for at most 5 s.
	if answered := got.at.Sub(stopping); answered > 8*time.Second {
		t.Errorf("kubectl was answered %s after the stop began, not once syncs writing had finished", answered)
	}
	if still := kubectl(t, "get", "gitrepository", "stop-waits", "-o", "jsonpath={.status.pendingSyncRequest.id}"); still != pending {
		t.Errorf("after the restart the queued sync request is %q, want %s", still, pending)
	}
}

// clashingCRD is a CRD whose singular name is another CRD's: stored, never
// Established.
func clashingCRD(plural, singular, kind string) string {
	return `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: ` + plural + `.clash.example.com}
spec:
  group: clash.example.com
  names: {kind: ` + kind + `, plural: ` + plural + `, singular: ` + singular + `}
  scope: Namespaced
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
`
}

// TestASlowApplyShowsSyncing: an apply still running after a second shows
// phase Syncing (here it waits for a CRD that is never Established); it
// then fails with CRDNotEstablished, naming the CRD.
func TestASlowApplyShowsSyncing(t *testing.T) {
	t.Cleanup(func() {
		// Retried, it would wait for its CRD again and again while later
		// tests run.
		_, _ = cluster.Kubectl(context.Background(), "delete", "gitrepository", "slow-apply", "--timeout=60s")
		_, _ = cluster.Kubectl(context.Background(), "delete", "crd", "widgets.clash.example.com", "gadgets.clash.example.com")
	})
	kubectlInput(t, clashingCRD("widgets", "widget", "Widget"), "apply", "-f", "-")
	createNamespace(t, "slow-apply")
	pushRepository(t, "slow-apply", map[string]gitserver.File{
		"deploy/crd.yaml":    {Content: clashingCRD("gadgets", "widget", "Gadget")},
		"deploy/gadget.yaml": {Content: "apiVersion: clash.example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n"},
	})
	kubectlInput(t, gitRepository("slow-apply", "slow-apply", "slow-apply", ""), "apply", "-f", "-")
	waitForPhase(t, "default", "slow-apply", v1alpha1.PhaseSyncing)
	if reconciling := kubectl(t, "get", "gitrepository", "slow-apply", "-o",
		`jsonpath={.status.conditions[?(@.type=="Reconciling")].message}`); !strings.Contains(reconciling, "applying commit") {
		t.Errorf("Reconciling while syncing: %q", reconciling)
	}
	if message := waitForPhase(t, "default", "slow-apply", v1alpha1.PhaseFailed); !strings.Contains(message, "gadgets.clash.example.com") {
		t.Errorf("the failure does not name the CRD: %s", message)
	}
	if reason, _ := readyReason(t, "slow-apply"); reason != "CRDNotEstablished" {
		t.Errorf("Ready's reason: %s, want CRDNotEstablished", reason)
	}
}
