package webhook

import (
	"net/http"
	"testing"
)

func TestParseGitea(t *testing.T) {
	urls := []string{
		"https://git.example.org/infra/fleet.git",
		"ssh://git@git.example.org:2222/infra/fleet.git",
		"https://git.example.org/infra/fleet",
	}
	change := []Change{{Ref: "refs/heads/main", Commit: "4b1e0c7d9a2f83e5617c4d0b9e8a3f2c1d6e5b7a"}}
	runParseCases(t, "gitea", []parseCase{{
		name: "gitea push",
		headers: map[string]string{
			"X-Gitea-Event": "push", "X-Gitea-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
			"X-Gogs-Event": "push", "X-Gogs-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
			"X-GitHub-Event": "push", "X-GitHub-Delivery": "f6266f16-1bf3-46a5-9ea4-602e06ead473",
		},
		payload: "gitea-push.json",
		want:    &Push{Provider: "gitea", DeliveryID: "f6266f16-1bf3-46a5-9ea4-602e06ead473", URLs: urls, Changes: change},
	}, {
		name:    "forgejo push",
		headers: map[string]string{"X-Forgejo-Event": "push", "X-Forgejo-Delivery": "0b7c3e2a-5f14-4c3e-9a1d-2e6f8b0c4d7a"},
		payload: "gitea-push.json",
		want:    &Push{Provider: "gitea", DeliveryID: "0b7c3e2a-5f14-4c3e-9a1d-2e6f8b0c4d7a", URLs: urls, Changes: change},
	}, {
		name:    "gogs push",
		headers: map[string]string{"X-Gogs-Event": "push", "X-Gogs-Delivery": "a3c5e7f9-1b2d-4f6a-8c0e-2d4f6a8c0e1b"},
		payload: "gitea-push.json",
		want:    &Push{Provider: "gitea", DeliveryID: "a3c5e7f9-1b2d-4f6a-8c0e-2d4f6a8c0e1b", URLs: urls, Changes: change},
	}, {
		name:    "branch deleted",
		headers: map[string]string{"X-Gitea-Event": "push"},
		body:    `{"ref":"refs/heads/old","after":"0000000000000000000000000000000000000000","repository":{"clone_url":"https://git.example.org/infra/fleet.git"}}`,
		want:    &Push{Provider: "gitea", URLs: urls[:1], Changes: []Change{{Ref: "refs/heads/old", Deleted: true}}},
	}, {
		name:    "other event",
		headers: map[string]string{"X-Gitea-Event": "create"},
		payload: "gitea-push.json",
		wantErr: ErrIgnoredEvent,
		errHas:  `"create"`,
	}, {
		name:    "no event header",
		headers: map[string]string{"X-GitHub-Event": "push"},
		payload: "gitea-push.json",
		wantErr: ErrMalformed,
		errHas:  "X-Gitea-Event or X-Forgejo-Event or X-Gogs-Event",
	}, {
		name:    "form-encoded body",
		headers: map[string]string{"X-Gitea-Event": "push"},
		body:    `payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D`,
		wantErr: ErrMalformed,
		errHas:  "body is not JSON",
	}, {
		name:    "repository of the wrong type",
		headers: map[string]string{"X-Gitea-Event": "push"},
		body:    `{"ref":"refs/heads/main","repository":[]}`,
		wantErr: ErrMalformed,
		errHas:  "repository: want an object",
	}})
}

// Any one of the signature headers Gitea, Forgejo and Gogs send suffices.
func TestVerifyGiteaHeaders(t *testing.T) {
	body := readPayload(t, "gitea-push.json")
	secret := []byte(testSecret)
	sig := testHexMAC(body, secret)
	for _, tc := range []struct {
		name string
		h    http.Header
		want bool
	}{
		{"gitea", http.Header{"X-Gitea-Signature": {sig}}, true},
		{"forgejo", http.Header{"X-Forgejo-Signature": {sig}}, true},
		{"gogs", http.Header{"X-Gogs-Signature": {sig}}, true},
		{"github form", http.Header{"X-Hub-Signature-256": {"sha256=" + sig}}, true},
		{"bad gitea, good forgejo", http.Header{"X-Gitea-Signature": {"00"}, "X-Forgejo-Signature": {sig}}, true},
		{"github form without prefix", http.Header{"X-Hub-Signature-256": {sig}}, false},
		{"bare hex with prefix", http.Header{"X-Gitea-Signature": {"sha256=" + sig}}, false},
		{"all wrong", http.Header{"X-Gitea-Signature": {testHexMAC(body, []byte("x"))}, "X-Gogs-Signature": {"zz"}}, false},
		{"none", http.Header{}, false},
	} {
		if got := verifyGitea(tc.h, body, secret); got != tc.want {
			t.Errorf("%s: verifyGitea = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func FuzzGitea(f *testing.F) {
	fuzzProvider(f, "gitea", giteaEventHeaders, []string{"push", "create", ""})
}
