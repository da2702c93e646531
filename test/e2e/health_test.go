package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/test/gitserver"
)

// deployment is a Deployment of replicas: with none there is nothing to
// roll out and kube-controller-manager's deployment controller reports it
// available; with one it never is, since no kubelet runs here.
func deployment(replicas string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: ` + replicas + `
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.invalid/web:1}]
`
}

// healthy returns the Healthy condition's status and reason, and Ready's.
func healthy(t *testing.T, name string) (string, string) {
	t.Helper()
	out := kubectl(t, "get", "gitrepository", name, "-o",
		`jsonpath={.status.conditions[?(@.type=="Healthy")].status}/{.status.conditions[?(@.type=="Healthy")].reason} {.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].reason}`)
	h, r, _ := strings.Cut(out, " ")
	return h, r
}

func waitForConditions(t *testing.T, name, wantHealthy, wantReady string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		h, r := healthy(t, name)
		if h == wantHealthy && r == wantReady {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Healthy %s, Ready %s; want %s and %s\n%s", h, r, wantHealthy, wantReady,
				kubectl(t, "get", "gitrepository", name, "-o", "yaml"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestWaitForHealth: with spec.wait, Ready waits for what was applied to be
// healthy (kstatus): a Deployment that never becomes available ends in
// HealthTimeout naming it, one that does makes Ready True, and a new commit
// during a wait is synced at once, the old wait given up.
func TestWaitForHealth(t *testing.T) {
	createNamespace(t, "health")
	pushRepository(t, "health", map[string]gitserver.File{
		"deploy/cm.yaml":  {Content: configMapV1},
		"deploy/web.yaml": {Content: deployment("1")},
	})
	// healthChecks names an object someone else makes.
	const checks = "  healthChecks: [{apiVersion: v1, kind: ConfigMap, name: made-elsewhere}]\n"
	kubectlInput(t, gitRepository("health", "health", "health", "  wait: true\n  healthTimeout: 4s\n"+checks), "apply", "-f", "-")
	waitForConditions(t, "health", "False/HealthTimeout", "False/HealthTimeout", 60*time.Second)
	message := kubectl(t, "get", "gitrepository", "health", "-o", `jsonpath={.status.conditions[?(@.type=="Healthy")].message}`)
	if !strings.Contains(message, "Deployment health/web") || !strings.Contains(message, "ConfigMap health/made-elsewhere: not found") ||
		strings.Contains(message, "ConfigMap health/settings") {
		t.Errorf("the timeout does not name just the Deployment and the missing check: %s", message)
	}

	kubectlInput(t, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: made-elsewhere\n  namespace: health\n", "apply", "-f", "-")
	pushRepository(t, "health", map[string]gitserver.File{"deploy/web.yaml": {Content: deployment("0")}})
	if answer := syncAndWait(t, "health"); answer.Status.Phase != v1alpha1.PhaseSynced {
		t.Fatalf("sync: %+v", answer.Status)
	}
	waitForConditions(t, "health", "True/Healthy", "True/Succeeded", 30*time.Second)

	// A commit that will not become healthy, with a long wait; then a fix
	// is pushed: it is synced at once and its wait decides.
	kubectlInput(t, gitRepository("health", "health", "health", "  wait: true\n  healthTimeout: 10m\n"+checks), "apply", "-f", "-")
	pushRepository(t, "health", map[string]gitserver.File{"deploy/web.yaml": {Content: deployment("1")}})
	syncAndWait(t, "health")
	waitForConditions(t, "health", "Unknown/HealthCheckPending", "False/HealthCheckPending", 30*time.Second)
	fixed := pushRepository(t, "health", map[string]gitserver.File{"deploy/web.yaml": {Content: deployment("0")}})
	start := time.Now()
	syncAndWait(t, "health")
	waitForConditions(t, "health", "True/Healthy", "True/Succeeded", 30*time.Second)
	if got := kubectl(t, "get", "gitrepository", "health", "-o", "jsonpath={.status.lastSyncedCommit}"); got != fixed {
		t.Errorf("lastSyncedCommit %s, want the fix %s", got, fixed)
	}
	took := time.Since(start)
	t.Logf("the fix was healthy %s after it was pushed, during a 10m wait for the commit before", took.Round(time.Millisecond))
	if took > 2*time.Minute {
		t.Errorf("the fix took %s: it waited for the old wait", took)
	}
}
