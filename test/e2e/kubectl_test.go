package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	clientset "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned"
	"github.com/falsesystems/alumiini/test/localcluster"
)

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return kubectlInput(t, "", args...)
}

func kubectlInput(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := cluster.KubectlInput(ctx, stdin, args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return string(out)
}

// kubectlFails runs kubectl expecting it to fail and returns its stderr.
func kubectlFails(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := cluster.KubectlInput(ctx, stdin, args...)
	var kerr *localcluster.KubectlError
	if !errors.As(err, &kerr) {
		t.Fatalf("kubectl %v succeeded (%s), want a failure", args, out)
	}
	return kerr.Stderr
}

func TestApplyGetExplainExample(t *testing.T) {
	example, err := filepath.Abs("../../artifacts/examples/gitrepository.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := kubectl(t, "apply", "-f", example)
	if !strings.Contains(out, "gitrepository.alumiini.false.systems/example created") {
		t.Errorf("kubectl apply said %q", out)
	}
	out = kubectl(t, "get", "gitrepositories")
	header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
	want := []string{"NAME", "URL", "BRANCH", "COMMIT", "PHASE", "LAST", "SYNC", "AGE"}
	if strings.Join(header, " ") != strings.Join(want, " ") {
		t.Errorf("kubectl get header %v, want %v\n%s", header, want, out)
	}
	if !strings.Contains(out, "example") || !strings.Contains(out, "main") {
		t.Errorf("kubectl get does not list the example:\n%s", out)
	}
	if out := kubectl(t, "get", "gitrepo", "example", "-o", "jsonpath={.spec.interval}"); out != "1m" {
		t.Errorf("short name and jsonpath: %q", out)
	}
	out = kubectl(t, "explain", "gitrepository.spec.url")
	// kubectl wraps the doc at its own width.
	if !strings.Contains(strings.Join(strings.Fields(out), " "), "Credentials never go in the URL") {
		t.Errorf("kubectl explain does not print the field's doc:\n%s", out)
	}
	// Server-side apply needs correct OpenAPI model names for our kinds.
	manifest := `apiVersion: alumiini.false.systems/v1alpha1
kind: GitRepository
metadata:
  name: applied-server-side
spec:
  url: http://127.0.0.1:1/org/repo.git
  tag: v1.0.0
`
	out = kubectlInput(t, manifest, "apply", "--server-side", "-f", "-")
	if !strings.Contains(out, "serverside-applied") {
		t.Errorf("kubectl apply --server-side said %q", out)
	}
}

func TestInvalidObjectNamesTheField(t *testing.T) {
	manifest := `apiVersion: alumiini.false.systems/v1alpha1
kind: GitRepository
metadata:
  name: bad
spec:
  url: http://127.0.0.1:1/org/repo.git
  interval: 1s
  path: ../elsewhere
`
	stderr := kubectlFails(t, manifest, "apply", "-f", "-")
	for _, want := range []string{
		`The GitRepository "bad" is invalid`,
		`spec.interval: Invalid value: "1s": must be between 10s and 24h`,
		`spec.path: Invalid value: "../elsewhere"`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("kubectl's error lacks %q:\n%s", want, stderr)
		}
	}
}

func TestSyncThroughKubectlRaw(t *testing.T) {
	kubectlInput(t, repoManifest("raw-sync"), "apply", "-f", "-")
	body := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(body, []byte(`{"spec":{"force":true}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out := kubectl(t, "create", "--raw", syncPath("raw-sync"), "-f", body)
	var answer v1alpha1.GitRepositorySyncRequest
	if err := json.Unmarshal([]byte(out), &answer); err != nil {
		t.Fatalf("the answer is not a GitRepositorySyncRequest: %v\n%s", err, out)
	}
	if answer.Kind != "GitRepositorySyncRequest" || answer.Status.ID == "" || answer.Status.Phase != v1alpha1.PhasePending || !answer.Spec.Force {
		t.Errorf("answer: %s", out)
	}
	// The controller may have handled it already: it is pending or answered.
	ids := kubectl(t, "get", "gitrepository", "raw-sync", "-o", "jsonpath={.status.pendingSyncRequest.id} {.status.lastSyncRequest.id}")
	if !strings.Contains(ids, answer.Status.ID) {
		t.Errorf("the request %s is neither pending nor answered on the object: %q", answer.Status.ID, ids)
	}
	stderr := kubectlFails(t, "", "create", "--raw", syncPath("does-not-exist"), "-f", body)
	if !strings.Contains(stderr, "NotFound") && !strings.Contains(stderr, "not found") {
		t.Errorf("sync of a missing GitRepository: %s", stderr)
	}
}

func TestSyncIsGovernedByRBAC(t *testing.T) {
	kubectlInput(t, repoManifest("rbac-sync"), "apply", "-f", "-")
	kubectlInput(t, `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: gitrepository-syncer
rules:
- apiGroups: ["alumiini.false.systems"]
  resources: ["gitrepositories/sync"]
  verbs: ["create"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: alice-syncs
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: gitrepository-syncer
subjects:
- kind: User
  name: alice
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: bob-views
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: alumiini:view
subjects:
- kind: User
  name: bob
`, "apply", "-f", "-")
	body := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(body, []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// Bob may read GitRepositories but not sync. (The local control plane runs
	// no controller-manager, so the aggregate-to-view label does not fold
	// alumiini:view into view here; bob is bound to it directly.)
	if out := kubectl(t, "--as=bob", "get", "gitrepository", "rbac-sync", "-o", "name"); strings.TrimSpace(out) != "gitrepository.alumiini.false.systems/rbac-sync" {
		t.Errorf("bob cannot read: %q", out)
	}
	stderr := kubectlFails(t, "", "--as=bob", "create", "--raw", syncPath("rbac-sync"), "-f", body)
	if !strings.Contains(stderr, "Forbidden") || !strings.Contains(stderr, "gitrepositories/sync") {
		t.Errorf("bob's sync should be forbidden on gitrepositories/sync, got: %s", stderr)
	}
	// RBAC may take a moment to reach the authorizer's cache; retry briefly.
	var out string
	var err error
	for i := 0; i < 20; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var raw []byte
		raw, err = cluster.Kubectl(ctx, "--as=alice", "create", "--raw", syncPath("rbac-sync"), "-f", body)
		cancel()
		out = string(raw)
		if err == nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil || !strings.Contains(out, `"id"`) {
		t.Errorf("alice's sync: %v %s", err, out)
	}
}

func TestTypedClientThroughKubeAPIServer(t *testing.T) {
	config, err := cluster.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	client := clientset.NewForConfigOrDie(config)
	ctx := context.Background()
	repos := client.AlumiiniV1alpha1().GitRepositories("default")
	created, err := repos.Create(ctx, &v1alpha1.GitRepository{
		ObjectMeta: metav1.ObjectMeta{Name: "typed"},
		Spec:       v1alpha1.GitRepositorySpec{URL: cluster.Git.BaseURL() + "/no-such-repository.git", Path: "apps"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create through kube-apiserver: %v", err)
	}
	if created.Spec.Branch != "main" || created.Generation != 1 {
		t.Errorf("created: %+v", created)
	}
	answer, err := repos.Sync(ctx, "typed", &v1alpha1.GitRepositorySyncRequest{}, metav1.CreateOptions{})
	if err != nil || answer.Status.ID == "" {
		t.Fatalf("Sync through kube-apiserver: %v %+v", err, answer)
	}
	// With wait, the answer carries the controller's result: this repository
	// does not exist on the git server, and the result says so.
	result, err := repos.Sync(ctx, "typed", &v1alpha1.GitRepositorySyncRequest{Spec: v1alpha1.GitRepositorySyncRequestSpec{Wait: true, TimeoutSeconds: ptr.To[int32](25)}}, metav1.CreateOptions{})
	if err != nil || result.Status.Phase != v1alpha1.PhaseFailed || !strings.Contains(result.Status.Message, "not found") {
		t.Errorf("a waiting Sync through kube-apiserver: %v %+v", err, result)
	}
	list, err := repos.List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=typed"})
	if err != nil || len(list.Items) != 1 {
		t.Errorf("list: %v %d", err, len(list.Items))
	}
	if err := repos.Delete(ctx, "typed", metav1.DeleteOptions{}); err != nil {
		t.Errorf("delete: %v", err)
	}
}

func TestDiscoveryListsTheResources(t *testing.T) {
	out := kubectl(t, "get", "--raw", "/apis/alumiini.false.systems/v1alpha1")
	var list metav1.APIResourceList
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	got := map[string]string{}
	for _, r := range list.APIResources {
		got[r.Name] = r.Kind
	}
	want := map[string]string{
		"gitrepositories":        "GitRepository",
		"gitrepositories/status": "GitRepository",
		"gitrepositories/sync":   "GitRepositorySyncRequest",
	}
	for name, kind := range want {
		if got[name] != kind {
			t.Errorf("discovery: %s has kind %q, want %q (all: %v)", name, got[name], kind, got)
		}
	}
	if out := kubectl(t, "api-resources", "--api-group=alumiini.false.systems"); !strings.Contains(out, "gitrepo") {
		t.Errorf("kubectl api-resources does not show the short name:\n%s", out)
	}
}

func repoManifest(name string) string {
	return `apiVersion: alumiini.false.systems/v1alpha1
kind: GitRepository
metadata:
  name: ` + name + `
spec:
  url: ` + cluster.Git.BaseURL() + `/` + name + `.git
`
}

func syncPath(name string) string { return syncPathIn("default", name) }

func syncPathIn(namespace, name string) string {
	return "/apis/alumiini.false.systems/v1alpha1/namespaces/" + namespace + "/gitrepositories/" + name + "/sync"
}
