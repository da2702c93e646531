package buildtags

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestAlumiiniLinksNoGoPluginLoader guards the build tags: a dependency that
// brings the "plugin" package back makes every binary 38 MB larger again.
func TestAlumiiniLinksNoGoPluginLoader(t *testing.T) {
	tags, err := Read("../..")
	if err != nil {
		t.Fatal(err)
	}
	if deps := listDeps(t, tags); slices.Contains(deps, "plugin") {
		t.Errorf("alumiini built with -tags %q still links the plugin package", tags)
	}
	// Without the tags it does: the check above is looking at the right thing.
	if deps := listDeps(t, ""); !slices.Contains(deps, "plugin") {
		t.Errorf("without build tags alumiini no longer links the plugin package; is %s still needed?", File)
	}
}

func listDeps(t *testing.T, tags string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-tags", tags, "../../cmd/alumiini").Output()
	if err != nil {
		t.Fatalf("go list -deps -tags %q: %v", tags, err)
	}
	return strings.Fields(string(out))
}
