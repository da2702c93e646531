package version

import (
	"strings"
	"testing"
)

func TestInfoNamesTheVersionAndTheLibraries(t *testing.T) {
	Version, Commit, BuildDate = "v0.1.0", "0123456", "2026-11-27T00:00:00Z"
	out := Get().String()
	for _, want := range []string{"alumiini v0.1.0", "commit: 0123456", "built: 2026-11-27T00:00:00Z", "go: go1."} {
		if !strings.Contains(out, want) {
			t.Errorf("%q lacks %q", out, want)
		}
	}
}
