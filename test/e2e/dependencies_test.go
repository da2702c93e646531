package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/gitserver"
)

func readyReason(t *testing.T, name string) (string, string) {
	t.Helper()
	out := kubectl(t, "get", "gitrepository", name, "-o",
		`jsonpath={.status.conditions[?(@.type=="Ready")].reason}|{.status.conditions[?(@.type=="Ready")].message}`)
	reason, message, _ := strings.Cut(out, "|")
	return reason, message
}

func waitForReason(t *testing.T, name, want string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		reason, message := readyReason(t, name)
		if reason == want {
			return message
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: Ready's reason is %q (%s), want %s", name, reason, message, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDependsOn: a GitRepository waits for its dependency, saying which,
// and syncs as soon as the dependency is Ready, not at its own interval; a
// dependency on itself is refused, a longer cycle reported.
func TestDependsOn(t *testing.T) {
	for _, name := range []string{"dep-infra", "dep-app"} {
		createNamespace(t, name)
		pushRepository(t, name, map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	}
	kubectlInput(t, gitRepository("dep-infra", "dep-infra", "dep-infra", "  suspend: true\n"), "apply", "-f", "-")
	// An interval of an hour: only the dependency's turning Ready can wake it.
	kubectlInput(t, strings.Replace(gitRepository("dep-app", "dep-app", "dep-app", "  dependsOn: [{name: dep-infra}]\n"),
		"interval: 1m", "interval: 1h", 1), "apply", "-f", "-")
	if message := waitForReason(t, "dep-app", "DependencyNotReady"); !strings.Contains(message, "default/dep-infra") {
		t.Errorf("the wait does not name the dependency: %s", message)
	}
	if _, err := cluster.Kubectl(t.Context(), "get", "configmap", "settings", "-n", "dep-app"); err == nil {
		t.Error("the dependent synced before its dependency was Ready")
	}

	kubectlInput(t, gitRepository("dep-infra", "dep-infra", "dep-infra", ""), "apply", "-f", "-")
	kubectl(t, "wait", "--for=condition=Ready", "gitrepository/dep-infra", "--timeout=30s")
	infraReady := time.Now()
	// Ready within minutes of an hour's interval: the dependency woke it.
	if _, err := cluster.Kubectl(t.Context(), "wait", "--for=condition=Ready", "gitrepository/dep-app", "--timeout=2m"); err != nil {
		t.Fatalf("the dependent was not woken when its dependency turned Ready: %v", err)
	}
	t.Logf("the dependent was Ready %s after its dependency (its interval is 1h)", time.Since(infraReady).Round(time.Millisecond))

	out := kubectlFails(t, gitRepository("dep-self", "dep-app", "dep-app", "  dependsOn: [{name: dep-self}]\n"), "apply", "-f", "-")
	if !strings.Contains(out, "spec.dependsOn[0]") || !strings.Contains(out, "cannot depend on itself") {
		t.Errorf("a dependency on itself: %s", out)
	}
	kubectlInput(t, gitRepository("dep-x", "dep-app", "dep-app", "  dependsOn: [{name: dep-y}]\n")+"---\n"+
		gitRepository("dep-y", "dep-app", "dep-app", "  dependsOn: [{name: dep-x}]\n"), "apply", "-f", "-")
	if message := waitForReason(t, "dep-x", "DependencyCycle"); !strings.Contains(message, "default/dep-x → default/dep-y → default/dep-x") {
		t.Errorf("the cycle is not named: %s", message)
	}
}
