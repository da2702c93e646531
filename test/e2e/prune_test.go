package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/test/gitserver"
)

// TestAnEmptyCommitPrunesNothingUnlessMeantTo: a commit whose path renders
// no object fails (EmptyRender) and deletes nothing; the same with the
// .alumiini-allow-empty marker prunes everything. An object whose manifest
// disables pruning outlives both its removal from git and its
// GitRepository, released.
func TestAnEmptyCommitPrunesNothingUnlessMeantTo(t *testing.T) {
	const kept = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\n  annotations:\n    alumiini.false.systems/prune: disabled\n"
	createNamespace(t, "empty-render")
	pushRepository(t, "empty-render", map[string]gitserver.File{
		"deploy/cm.yaml":   {Content: configMapV1},
		"deploy/kept.yaml": {Content: kept},
	})
	kubectlInput(t, gitRepository("empty-render", "empty-render", "empty-render", ""), "apply", "-f", "-")
	kubectl(t, "wait", "--for=condition=Ready", "gitrepository/empty-render", "--timeout=60s")

	// Everything gone from the path by mistake (a README stays).
	pushRepository(t, "empty-render", map[string]gitserver.File{"deploy/README.md": {Content: "moved\n"}},
		"deploy/cm.yaml", "deploy/kept.yaml")
	answer := syncAndWait(t, "empty-render")
	if answer.Status.Phase != v1alpha1.PhaseFailed || !strings.Contains(answer.Status.Message, "renders no objects") ||
		!strings.Contains(answer.Status.Message, "deploy/.alumiini-allow-empty") {
		t.Fatalf("an empty commit: %+v", answer.Status)
	}
	if reason := kubectl(t, "get", "gitrepository", "empty-render", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].reason}`); reason != "EmptyRender" {
		t.Errorf("Ready's reason is %q, want EmptyRender", reason)
	}
	for _, name := range []string{"settings", "kept"} {
		if _, err := cluster.Kubectl(context.Background(), "get", "configmap", name, "-n", "empty-render"); err != nil {
			t.Errorf("the empty commit deleted %s", name)
		}
	}

	// Meant to be empty: the marker prunes, and the annotated object stays.
	pushRepository(t, "empty-render", map[string]gitserver.File{"deploy/.alumiini-allow-empty": {Content: ""}})
	answer = syncAndWait(t, "empty-render")
	if answer.Status.Phase != v1alpha1.PhaseSynced || answer.Status.Objects == nil || answer.Status.Objects.Pruned != 1 {
		t.Fatalf("an empty commit with the marker: %+v", answer.Status)
	}
	if _, err := cluster.Kubectl(context.Background(), "get", "configmap", "settings", "-n", "empty-render"); err == nil {
		t.Error("the marker did not let the empty commit prune")
	}
	if got := kubectl(t, "get", "configmap", "kept", "-n", "empty-render", "-o", "jsonpath={.metadata.labels}"); strings.Contains(got, "alumiini") {
		t.Errorf("the object with prune disabled is kept but still labelled ours: %s", got)
	}

	// Still in git when its GitRepository is deleted: kept too.
	pushRepository(t, "empty-render", map[string]gitserver.File{"deploy/kept-too.yaml": {Content: strings.Replace(kept, "name: kept", "name: kept-too", 1)}})
	syncAndWait(t, "empty-render")
	kubectl(t, "delete", "gitrepository", "empty-render", "--timeout=60s")
	if got, err := cluster.Kubectl(context.Background(), "get", "configmap", "kept-too", "-n", "empty-render", "-o", "jsonpath={.metadata.labels}"); err != nil || strings.Contains(string(got), "alumiini") {
		t.Errorf("the object with prune disabled did not outlive its GitRepository, released: %v %s", err, got)
	}
}
