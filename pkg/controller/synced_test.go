package controller

import (
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// TestNotReadyUntilTheGitRepositoriesAreListed: /readyz's controller check
// (Synced) fails while the GitRepository informer has listed nothing, here
// because no API server answers, so a replica that cannot sync yet takes no
// traffic. The e2e suite shows it passing once the informer has synced.
func TestNotReadyUntilTheGitRepositoriesAreListed(t *testing.T) {
	nowhere := &rest.Config{Host: "http://127.0.0.1:1"}
	c, err := New(Config{APIConfig: nowhere, TargetConfig: nowhere})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Synced(); err == nil || !strings.Contains(err.Error(), "has not synced") {
		t.Errorf("Synced before any list: %v, want an error saying the informer has not synced", err)
	}
}
