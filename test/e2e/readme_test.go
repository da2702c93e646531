package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/gitserver"
	"github.com/falsesystems/alumiini/test/localcluster"
)

// TestTheREADMEsClientGoExampleSyncs: the README's Go snippet is the sync
// function of artifacts/examples/sync-client, word for word, and that
// program asks for a sync through kube-apiserver and gets the new commit
// back.
func TestTheREADMEsClientGoExampleSyncs(t *testing.T) {
	root := localcluster.RepoRoot()
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	source, err := os.ReadFile(filepath.Join(root, "artifacts/examples/sync-client/main.go"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, found := strings.Cut(string(readme), "```go\n")
	snippet, _, closed := strings.Cut(rest, "```")
	if !found || !closed || !strings.Contains(string(source), snippet) {
		t.Errorf("the README's Go snippet is not quoted from artifacts/examples/sync-client/main.go:\n%s", snippet)
	}

	readyRepository(t, "readme-client", "")
	sha := pushRepository(t, "readme-client", map[string]gitserver.File{"deploy/cm.yaml": {Content: strings.Replace(configMapV1, `"1"`, `"2"`, 1)}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, "go", "run", "./artifacts/examples/sync-client",
		"-kubeconfig", cluster.Kubeconfig, "-namespace", "default", "-name", "readme-client")
	run.Dir = root
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("the example: %v\n%s", err, out)
	}
	if !strings.HasPrefix(string(out), "Synced "+sha) {
		t.Errorf("the example answered %q, want Synced %s", out, sha)
	}
}
