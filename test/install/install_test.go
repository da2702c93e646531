// Package install proves the shipped install (artifacts/deploy, install.yaml)
// on a real control plane: it validates and applies, and the alumiini binary,
// run as its pod would be (in-cluster configuration from the manifest's
// ServiceAccount token, no admin credentials), serves the API through the
// APIService and syncs a GitRepository. There is no kubelet here, so the
// StatefulSet's pod never starts; the binary runs as a local process, and the
// Service the APIService names is pointed at it on loopback.
package install

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/freeport"
	"github.com/falsesystems/alumiini/test/gitserver"
	"github.com/falsesystems/alumiini/test/localcluster"
)

var (
	cluster *localcluster.Cluster
	binary  string
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "alumiini-install-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "alumiini")
		if err := localcluster.BuildAlumiini(binary); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if cluster, err = localcluster.StartForTest(dir, true); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cluster.Stop()
		return m.Run()
	}())
}

func kubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := cluster.KubectlInput(ctx, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %v: %v", args, err)
	}
	return string(out)
}

func freePort(t *testing.T) int {
	t.Helper()
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

func TestTheShippedInstallRunsWithOnlyItsOwnRights(t *testing.T) {
	root := localcluster.RepoRoot()
	install, err := os.ReadFile(filepath.Join(root, "install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// A dry-run creates nothing, so namespaced objects of a dry-run need
	// their Namespace to exist already, as for any install.
	kubectl(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: alumiini-system\n", "apply", "-f", "-")
	kubectl(t, string(install), "apply", "--server-side", "--dry-run=server", "-f", "-")
	// The README's two ways, one after the other: the same objects.
	kubectl(t, "", "apply", "--server-side", "-f", filepath.Join(root, "install.yaml"))
	kubectl(t, "", "apply", "--server-side", "-k", filepath.Join(root, "artifacts/deploy"))
	checkPodAdmittedAsRestricted(t)

	// No pod network: the Service the APIService names points at loopback,
	// on the port the process below serves.
	port := freePort(t)
	serveAPIFrom(t, port, nil)

	state := t.TempDir()
	alumiini := startAsThePod(t, string(install), "alumiini", map[string]string{
		"--secure-port": strconv.Itoa(port), "--bind-address": "127.0.0.1",
		"--etcd-data-dir": filepath.Join(state, "etcd"), "--git-cache-dir": filepath.Join(state, "git"),
		"--webhook-bind-address": "127.0.0.1:0", "--metrics-bind-address": "127.0.0.1:0",
	})
	defer alumiini.stop()

	// Served through the aggregator: alumiini set the APIService's caBundle
	// to the certificate it made at start.
	waitForAPI(t, alumiini)

	git, err := gitserver.Start(t.TempDir(), "127.0.0.1:0", gitserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer git.Close()
	if _, err := git.Commit(context.Background(), "app", "main", map[string]gitserver.File{
		"deploy/cm.yaml": {Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: installed\ndata:\n  ok: \"yes\"\n"}}); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n", "apply", "-f", "-")
	kubectl(t, `apiVersion: alumiini.false.systems/v1alpha1
kind: GitRepository
metadata:
  name: app
  namespace: team
spec:
  url: `+git.BaseURL()+`/app.git
  path: deploy
`, "apply", "-f", "-")
	if out, err := cluster.Kubectl(context.Background(), "wait", "--for=condition=Ready", "gitrepository/app", "-n", "team", "--timeout=90s"); err != nil {
		t.Fatalf("the GitRepository did not sync: %v %s\n%s\nalumiini's log:\n%s", err, out,
			kubectl(t, "", "get", "gitrepository", "app", "-n", "team", "-o", "yaml"), alumiini.log())
	}
	if got := kubectl(t, "", "get", "configmap", "installed", "-n", "team", "-o", "jsonpath={.data.ok}"); got != "yes" {
		t.Errorf("the synced ConfigMap holds %q", got)
	}

	checkAggregatedRoles(t)

	// kubectl api-resources lists the group and nothing fails discovery.
	if out := kubectl(t, "", "api-resources", "--api-group=alumiini.false.systems"); !strings.Contains(out, "gitrepositories") {
		t.Errorf("api-resources: %s", out)
	}
	// Deleting a namespace that holds a GitRepository completes: the
	// namespace controller finds the aggregated group, deletes the
	// GitRepository, whose prune finalizer deletes what it applied.
	if out, err := cluster.Kubectl(context.Background(), "delete", "namespace", "team", "--timeout=120s"); err != nil {
		t.Fatalf("deleting a namespace with a GitRepository: %v %s\n%s", err, out,
			kubectl(t, "", "get", "namespace", "team", "-o", "yaml"))
	}
}

// checkPodAdmittedAsRestricted: the Namespace enforces the restricted Pod
// Security Standard (a pod with no securityContext is refused there, so
// admission is on),
// and kube-controller-manager's StatefulSet controller still gets the pod
// alumiini-0 admitted (no kubelet runs it here): the pod template meets the
// standard.
func checkPodAdmittedAsRestricted(t *testing.T) {
	t.Helper()
	// Polled: until kube-controller-manager made the namespace's default
	// ServiceAccount, ServiceAccount admission may refuse the pod first.
	for deadline := time.Now().Add(30 * time.Second); ; {
		out, err := cluster.Kubectl(context.Background(), "run", "unhardened", "--image=example.invalid/x",
			"--dry-run=server", "-n", "alumiini-system")
		if err != nil && strings.Contains(err.Error()+string(out), "violates PodSecurity") {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("a pod without a securityContext in alumiini-system: %v %s, want it refused by PodSecurity", err, out)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := cluster.Kubectl(context.Background(), "get", "pod", "alumiini-0", "-n", "alumiini-system", "-o", "name")
		if err == nil && strings.TrimSpace(string(out)) == "pod/alumiini-0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the StatefulSet's pod was not admitted: %v %s\nevents:\n%s", err, out,
				kubectl(t, "", "get", "events", "-n", "alumiini-system"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkAggregatedRoles: kube-controller-manager aggregates alumiini's roles
// into the built-in edit and view, so a namespace editor may write
// GitRepositories and ask for syncs, and a viewer may only read them.
func checkAggregatedRoles(t *testing.T) {
	t.Helper()
	kubectl(t, `apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: editors, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: ed}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: viewers, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: vi}]
`, "apply", "-f", "-")
	for _, c := range []struct {
		user, verb, resource, subresource string
		want                              string
	}{
		{"ed", "create", "gitrepositories.alumiini.false.systems", "", "yes"},
		{"ed", "create", "gitrepositories.alumiini.false.systems", "sync", "yes"},
		// The status is alumiini's: status.owner decides which replica syncs.
		{"ed", "update", "gitrepositories.alumiini.false.systems", "status", "no"},
		{"vi", "get", "gitrepositories.alumiini.false.systems", "", "yes"},
		{"vi", "get", "gitrepositories.alumiini.false.systems", "status", "yes"},
		{"vi", "create", "gitrepositories.alumiini.false.systems", "", "no"},
		{"vi", "create", "gitrepositories.alumiini.false.systems", "sync", "no"},
	} {
		args := []string{"auth", "can-i", c.verb, c.resource, "-n", "team", "--as=" + c.user}
		if c.subresource != "" {
			args = append(args, "--subresource="+c.subresource)
		}
		deadline := time.Now().Add(30 * time.Second) // aggregation takes a moment
		for {
			out, _ := cluster.Kubectl(context.Background(), args...)
			got := strings.TrimSpace(string(out))
			if got == c.want {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("kubectl %s: %q, want %q", strings.Join(args, " "), got, c.want)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}
