package install

import (
	"context"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/gitserver"
	"github.com/falsesystems/alumiini/test/localcluster"
)

// TestMultiTenantOverlayAppliesAsTheTeam runs artifacts/overlays/multi-tenant
// as its pod would: alumiini's own identity holds no cluster-admin, a
// GitRepository applies as its namespace's "gitops" ServiceAccount, and
// what that ServiceAccount may not do (writing into another namespace)
// fails and is named in status.
func TestMultiTenantOverlayAppliesAsTheTeam(t *testing.T) {
	ctx := context.Background()
	root := localcluster.RepoRoot()
	manifest := kubectl(t, "", "kustomize", filepath.Join(root, "artifacts/overlays/multi-tenant"))
	kubectl(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: alumiini-system\n", "apply", "-f", "-")
	// Installing over another test's install, as the overlay's own comment
	// tells a user to.
	kubectl(t, "", "delete", "clusterrolebinding", "alumiini:controller", "--ignore-not-found")
	kubectl(t, "", "delete", "statefulset,service", "alumiini", "-n", "alumiini-system", "--ignore-not-found")
	kubectl(t, "", "delete", "apiservice", "v1alpha1.alumiini.false.systems", "--ignore-not-found")
	kubectl(t, manifest, "apply", "--server-side", "--dry-run=server", "-f", "-")
	kubectl(t, manifest, "apply", "--server-side", "-f", "-")
	for _, namespace := range []string{"team-a", "team-b"} {
		out, _ := cluster.Kubectl(ctx, "auth", "can-i", "create", "configmaps", "-n", namespace,
			"--as=system:serviceaccount:alumiini-system:alumiini")
		if strings.TrimSpace(string(out)) != "no" {
			t.Errorf("alumiini's own identity may create ConfigMaps in %s: %s", namespace, out)
		}
	}

	port := freePort(t)
	serveAPIFrom(t, port, nil)
	state := t.TempDir()
	alumiini := startAsThePod(t, manifest, "alumiini", map[string]string{
		"--secure-port": strconv.Itoa(port), "--bind-address": "127.0.0.1",
		"--etcd-data-dir": filepath.Join(state, "etcd"), "--git-cache-dir": filepath.Join(state, "git"),
		"--webhook-bind-address": "127.0.0.1:0", "--metrics-bind-address": "127.0.0.1:0",
	})
	defer alumiini.stop()
	waitForAPI(t, alumiini)

	git, err := gitserver.Start(t.TempDir(), "127.0.0.1:0", gitserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer git.Close()
	if _, err := git.Commit(ctx, "team", "main", map[string]gitserver.File{
		"own/cm.yaml":     {Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: own\ndata:\n  team: a\n"},
		"foreign/cm.yaml": {Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: planted\n  namespace: team-b\ndata:\n  team: a\n"},
	}); err != nil {
		t.Fatal(err)
	}
	kubectl(t, `apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: gitops, namespace: team-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: gitops, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{kind: ServiceAccount, name: gitops, namespace: team-a}]
---
apiVersion: alumiini.false.systems/v1alpha1
kind: GitRepository
metadata: {name: own, namespace: team-a}
spec: {url: `+git.BaseURL()+`/team.git, path: own}
---
apiVersion: alumiini.false.systems/v1alpha1
kind: GitRepository
metadata: {name: foreign, namespace: team-a}
spec: {url: `+git.BaseURL()+`/team.git, path: foreign}
`, "apply", "-f", "-")

	if out, err := cluster.Kubectl(ctx, "wait", "--for=condition=Ready", "gitrepository/own", "-n", "team-a", "--timeout=90s"); err != nil {
		t.Fatalf("the team's GitRepository did not sync: %v %s\n%s\nalumiini's log:\n%s", err, out,
			kubectl(t, "", "get", "gitrepository", "own", "-n", "team-a", "-o", "yaml"), alumiini.log())
	}
	// The other GitRepository asks to write into team-b, which its
	// ServiceAccount may not: it fails, and nothing lands there.
	deadline := time.Now().Add(60 * time.Second)
	for {
		status := kubectl(t, "", "get", "gitrepository", "foreign", "-n", "team-a",
			"-o", `jsonpath={.status.phase} {.status.message}`)
		if strings.HasPrefix(status, "Failed") {
			if !strings.Contains(status, "forbidden") || !strings.Contains(status, "system:serviceaccount:team-a:gitops") {
				t.Errorf("the failure does not say the team's ServiceAccount was refused: %s", status)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the GitRepository writing into team-b did not fail: %q\nalumiini's log:\n%s", status, alumiini.log())
		}
		time.Sleep(500 * time.Millisecond)
	}
	if out, err := cluster.Kubectl(ctx, "get", "configmap", "planted", "-n", "team-b"); err == nil {
		t.Errorf("a ConfigMap landed in team-b: %s", out)
	}
	// Deleting the team's namespace completes, though its RoleBinding (the
	// ServiceAccount's rights to prune) goes with it.
	if out, err := cluster.Kubectl(ctx, "delete", "namespace", "team-a", "--timeout=120s"); err != nil {
		t.Fatalf("deleting the team's namespace: %v %s\n%s\nalumiini's log:\n%s", err, out,
			kubectl(t, "", "get", "namespace", "team-a", "-o", "yaml"), alumiini.log())
	}
}
