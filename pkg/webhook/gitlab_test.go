package webhook

import (
	"net/http"
	"testing"
)

func TestParseGitLab(t *testing.T) {
	urls := []string{
		"https://gitlab.example.com/Platform/cluster-config.git",
		"git@gitlab.example.com:Platform/cluster-config.git",
		"https://gitlab.example.com/Platform/cluster-config",
	}
	hook := func(event string) map[string]string {
		return map[string]string{"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e"}
	}
	runParseCases(t, "gitlab", []parseCase{{
		name:    "push hook",
		headers: hook("Push Hook"),
		payload: "gitlab-push.json",
		want: &Push{
			Provider:   "gitlab",
			DeliveryID: "13792a34-cac6-4fda-95a8-c58e00a3954e",
			URLs:       urls,
			Changes:    []Change{{Ref: "refs/heads/production", Commit: "e7a91c3d5b2f4068a1c9e3b5d7f2a4c6e8b0d1f3"}},
		},
	}, {
		name:    "annotated tag push gives the tagged commit",
		headers: map[string]string{"X-Gitlab-Event": "Tag Push Hook", "X-Gitlab-Webhook-UUID": "7f6e0c1a-3b2d-4e5f-8a9b-0c1d2e3f4a5b"},
		payload: "gitlab-tag-push.json",
		want: &Push{
			Provider:   "gitlab",
			DeliveryID: "7f6e0c1a-3b2d-4e5f-8a9b-0c1d2e3f4a5b",
			URLs:       urls,
			Changes:    []Change{{Ref: "refs/tags/v2.3.0", Commit: "5c8e1a3f7b9d2e4a6c0f8b1d3e5a7c9f2b4d6e8a"}},
		},
	}, {
		name:    "system hook push deleting a branch",
		headers: hook("System Hook"),
		payload: "gitlab-system-push.json",
		want: &Push{
			Provider:   "gitlab",
			DeliveryID: "13792a34-cac6-4fda-95a8-c58e00a3954e",
			URLs:       urls,
			Changes:    []Change{{Ref: "refs/heads/feature/retire-old-ingress", Deleted: true}},
		},
	}, {
		name:    "system hook of another kind",
		headers: hook("System Hook"),
		payload: "gitlab-system-project-create.json",
		wantErr: ErrIgnoredEvent,
		errHas:  `"System Hook/"`,
	}, {
		name:    "other event",
		headers: hook("Merge Request Hook"),
		payload: "gitlab-push.json",
		wantErr: ErrIgnoredEvent,
		errHas:  `"Merge Request Hook"`,
	}, {
		name:    "no event header",
		payload: "gitlab-push.json",
		wantErr: ErrMalformed,
		errHas:  "X-Gitlab-Event",
	}, {
		name:    "not JSON",
		headers: hook("Push Hook"),
		body:    `object_kind=push&ref=refs/heads/main`,
		wantErr: ErrMalformed,
		errHas:  "body is not JSON",
	}, {
		name:    "project of the wrong type",
		headers: hook("Push Hook"),
		body:    `{"object_kind":"push","project":"cluster-config"}`,
		wantErr: ErrMalformed,
		errHas:  "project: want an object, got JSON string",
	}, {
		name:    "checkout_sha not a commit",
		headers: hook("Push Hook"),
		body:    `{"ref":"refs/heads/main","after":"e7a91c3d5b2f4068a1c9e3b5d7f2a4c6e8b0d1f3","checkout_sha":"HEAD","project":{"git_http_url":"https://gitlab.example.com/a/b.git"}}`,
		wantErr: ErrMalformed,
		errHas:  `checkout_sha: "HEAD"`,
	}})
}

// GitLab sends the secret itself; verify compares digests so neither the
// token's length nor a shared prefix shows in the timing.
func TestVerifyGitLabToken(t *testing.T) {
	for token, want := range map[string]bool{
		testSecret:         true,
		testSecret + " ":   false,
		testSecret[:10]:    false,
		"":                 false,
		"it's a secret to": false,
	} {
		h := http.Header{"X-Gitlab-Token": {token}}
		if got := verifyGitLab(h, nil, []byte(testSecret)); got != want {
			t.Errorf("verifyGitLab(%q) = %v, want %v", token, got, want)
		}
	}
	if verifyGitLab(http.Header{"X-Gitlab-Token": {""}}, nil, nil) {
		t.Error("an empty token verifies against an empty secret")
	}
}

func FuzzGitLab(f *testing.F) {
	fuzzProvider(f, "gitlab", []string{"X-Gitlab-Event"}, []string{"Push Hook", "Tag Push Hook", "System Hook", "Merge Request Hook", ""})
}
