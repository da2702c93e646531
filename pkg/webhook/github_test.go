package webhook

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestParseGitHub(t *testing.T) {
	urls := []string{
		"https://github.com/octo-org/deploy-config.git",
		"git@github.com:octo-org/deploy-config.git",
		"git://github.com/octo-org/deploy-config.git",
		"https://github.com/octo-org/deploy-config",
	}
	push := func(event string) map[string]string {
		return map[string]string{"X-GitHub-Event": event, "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
	}
	runParseCases(t, "github", []parseCase{{
		name:    "push to a branch",
		headers: push("push"),
		payload: "github-push.json",
		want: &Push{
			Provider:   "github",
			DeliveryID: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			URLs:       urls,
			Changes:    []Change{{Ref: "refs/heads/main", Commit: "9d2c6f1e0b8a4e3f5c7a1b2d3e4f5a6b7c8d9e0f"}},
		},
	}, {
		name:    "tag deleted",
		headers: push("push"),
		payload: "github-tag-deleted.json",
		want: &Push{
			Provider:   "github",
			DeliveryID: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			URLs:       urls,
			Changes:    []Change{{Ref: "refs/tags/v1.4.0", Deleted: true}},
		},
	}, {
		name:    "ping of a repository hook names the repository",
		headers: push("ping"),
		payload: "github-ping.json",
		want: &Push{
			Provider:   "github",
			DeliveryID: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
			URLs:       []string{"https://github.com/octo-org/deploy-config.git", "https://github.com/octo-org/deploy-config"},
			Ping:       true,
		},
	}, {
		name:    "ping of an organization hook",
		headers: push("ping"),
		body:    `{"zen":"Design for failure.","hook_id":482911274,"hook":{"type":"Organization"},"organization":{"login":"octo-org"}}`,
		want:    &Push{Provider: "github", DeliveryID: "72d3162e-cc78-11e3-81ab-4c9367dc0958", Ping: true},
	}, {
		name:    "ping that is not JSON still pongs",
		headers: map[string]string{"X-GitHub-Event": "ping"},
		body:    `zen=Design+for+failure.`,
		want:    &Push{Provider: "github", Ping: true},
	}, {
		name:    "uppercase commit is lowercased",
		headers: map[string]string{"X-GitHub-Event": "push"},
		body:    `{"ref":"refs/heads/main","after":"9D2C6F1E0B8A4E3F5C7A1B2D3E4F5A6B7C8D9E0F","repository":{"clone_url":"https://github.com/octo-org/deploy-config.git"}}`,
		want: &Push{
			Provider: "github",
			URLs:     []string{"https://github.com/octo-org/deploy-config.git"},
			Changes:  []Change{{Ref: "refs/heads/main", Commit: "9d2c6f1e0b8a4e3f5c7a1b2d3e4f5a6b7c8d9e0f"}},
		},
	}, {
		name:    "a pull request ref is dropped, the push stays",
		headers: map[string]string{"X-GitHub-Event": "push"},
		body:    `{"ref":"refs/pull/12/head","after":"9d2c6f1e0b8a4e3f5c7a1b2d3e4f5a6b7c8d9e0f","repository":{"ssh_url":"git@github.com:octo-org/deploy-config.git"}}`,
		want:    &Push{Provider: "github", URLs: []string{"git@github.com:octo-org/deploy-config.git"}},
	}, {
		name:    "an overlong URL is dropped",
		headers: map[string]string{"X-GitHub-Event": "push"},
		body:    `{"ref":"refs/heads/main","after":"9d2c6f1e0b8a4e3f5c7a1b2d3e4f5a6b7c8d9e0f","repository":{"clone_url":"https://github.com/o/` + strings.Repeat("r", maxURLBytes) + `","ssh_url":"git@github.com:o/r.git"}}`,
		want: &Push{
			Provider: "github",
			URLs:     []string{"git@github.com:o/r.git"},
			Changes:  []Change{{Ref: "refs/heads/main", Commit: "9d2c6f1e0b8a4e3f5c7a1b2d3e4f5a6b7c8d9e0f"}},
		},
	}, {
		name:    "unprintable delivery id is dropped",
		headers: map[string]string{"X-GitHub-Event": "ping", "X-GitHub-Delivery": "id\twith tab"},
		body:    `{}`,
		want:    &Push{Provider: "github", Ping: true},
	}, {
		name:    "other event",
		headers: push("issues"),
		payload: "github-push.json",
		wantErr: ErrIgnoredEvent,
		errHas:  `ignored event "issues"`,
	}, {
		name:    "no event header",
		headers: map[string]string{},
		payload: "github-push.json",
		wantErr: ErrMalformed,
		errHas:  "X-GitHub-Event",
	}, {
		name:    "truncated JSON",
		headers: push("push"),
		body:    `{"ref": "refs/heads/main", "after": `,
		wantErr: ErrMalformed,
		errHas:  "body is not JSON",
	}, {
		name:    "ref of the wrong type",
		headers: push("push"),
		body:    `{"ref": 7}`,
		wantErr: ErrMalformed,
		errHas:  "ref: want a string, got JSON number",
	}, {
		name:    "deleted of the wrong type",
		headers: push("push"),
		body:    `{"deleted": "yes"}`,
		wantErr: ErrMalformed,
		errHas:  "deleted: want a boolean",
	}, {
		name:    "no repository URL",
		headers: push("push"),
		body:    `{"ref":"refs/heads/main","after":"9d2c6f1e0b8a4e3f5c7a1b2d3e4f5a6b7c8d9e0f","repository":{"clone_url":"not a url"}}`,
		wantErr: ErrMalformed,
		errHas:  "payload names no repository URL",
	}, {
		name:    "commit not hex",
		headers: push("push"),
		body:    `{"ref":"refs/heads/main","after":"main","repository":{"clone_url":"https://github.com/o/r.git"}}`,
		wantErr: ErrMalformed,
		errHas:  `after: "main" is not a 40-digit hex commit id`,
	}, {
		name:    "no after",
		headers: push("push"),
		body:    `{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/o/r.git"}}`,
		wantErr: ErrMalformed,
		errHas:  "after: missing",
	}, {
		name:    "invalid ref",
		headers: push("push"),
		body:    `{"ref":"refs/heads/../../etc","after":"9d2c6f1e0b8a4e3f5c7a1b2d3e4f5a6b7c8d9e0f","repository":{"clone_url":"https://github.com/o/r.git"}}`,
		wantErr: ErrMalformed,
		errHas:  "ref: ",
	}, {
		name:    "null body",
		headers: push("push"),
		body:    `null`,
		wantErr: ErrMalformed,
		errHas:  "payload names no repository URL",
	}})
}

func FuzzGitHub(f *testing.F) {
	fuzzProvider(f, "github", []string{"X-GitHub-Event"}, []string{"push", "ping", "issues", ""})
}

// TestGitHubOtherEventsNameTheirRepository: a hook that sends every event
// and has only a per-repository secret can still be verified for them.
func TestGitHubOtherEventsNameTheirRepository(t *testing.T) {
	h := http.Header{}
	h.Set("X-GitHub-Event", "issues")
	push, err := parseGitHub(h, []byte(`{"action":"opened","repository":{"clone_url":"https://github.com/org/repo.git"}}`))
	if !errors.Is(err, ErrIgnoredEvent) || push == nil || len(push.URLs) != 1 || len(push.Changes) != 0 {
		t.Fatalf("got %+v, %v", push, err)
	}
}
