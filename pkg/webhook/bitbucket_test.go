package webhook

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseBitbucket(t *testing.T) {
	urls := []string{
		"https://bitbucket.org/acme-team/platform-config",
		"https://bitbucket.org/acme-team/platform-config.git",
		"git@bitbucket.org:acme-team/platform-config.git",
	}
	event := func(key string) map[string]string {
		return map[string]string{"X-Event-Key": key, "X-Request-UUID": "4f1c9e2a-7b3d-4e6f-a1c2-9d8e7f6a5b4c", "X-Hook-UUID": "{d2b7a0c4-1e3f-4a5b-8c9d-0e1f2a3b4c5d}"}
	}
	changes := func(items ...string) string {
		return `{"push":{"changes":[` + strings.Join(items, ",") + `]},"repository":{"full_name":"acme-team/platform-config","links":{"html":{"href":"https://bitbucket.org/acme-team/platform-config"}}}}`
	}
	const update = `{"new":{"type":"branch","name":"main","target":{"hash":"d2a4c6e8f0b1d3f5a7c9e1b3d5f7a9c0e2b4d6f8"}},"old":null}`
	runParseCases(t, "bitbucket", []parseCase{{
		name:    "push of a branch, a new tag and a deletion",
		headers: event("repo:push"),
		payload: "bitbucket-push.json",
		want: &Push{
			Provider:   "bitbucket",
			DeliveryID: "4f1c9e2a-7b3d-4e6f-a1c2-9d8e7f6a5b4c",
			URLs:       urls,
			Changes: []Change{
				{Ref: "refs/heads/main", Commit: "d2a4c6e8f0b1d3f5a7c9e1b3d5f7a9c0e2b4d6f8"},
				{Ref: "refs/tags/release-2026.11", Commit: "d2a4c6e8f0b1d3f5a7c9e1b3d5f7a9c0e2b4d6f8"},
				{Ref: "refs/heads/spike/karpenter", Deleted: true},
			},
		},
	}, {
		name:    "the hook UUID is no delivery id",
		headers: map[string]string{"X-Event-Key": "repo:push", "X-Hook-UUID": "{d2b7a0c4-1e3f-4a5b-8c9d-0e1f2a3b4c5d}"},
		body:    changes(update),
		want: &Push{Provider: "bitbucket", URLs: urls, Changes: []Change{
			{Ref: "refs/heads/main", Commit: "d2a4c6e8f0b1d3f5a7c9e1b3d5f7a9c0e2b4d6f8"},
		}},
	}, {
		name:    "mercurial named branch is dropped",
		headers: event("repo:push"),
		body:    changes(`{"new":{"type":"named_branch","name":"default","target":{"hash":"x"}}}`, update),
		want: &Push{Provider: "bitbucket", DeliveryID: "4f1c9e2a-7b3d-4e6f-a1c2-9d8e7f6a5b4c", URLs: urls, Changes: []Change{
			{Ref: "refs/heads/main", Commit: "d2a4c6e8f0b1d3f5a7c9e1b3d5f7a9c0e2b4d6f8"},
		}},
	}, {
		name:    "other event",
		headers: event("repo:fork"),
		payload: "bitbucket-push.json",
		wantErr: ErrIgnoredEvent,
		errHas:  `"repo:fork"`,
	}, {
		name:    "no event header",
		payload: "bitbucket-push.json",
		wantErr: ErrMalformed,
		errHas:  "X-Event-Key",
	}, {
		name:    "bad hash names the change",
		headers: event("repo:push"),
		body:    changes(update, `{"new":{"type":"tag","name":"v1","target":{"hash":"d2a4c6e8"}}}`),
		wantErr: ErrMalformed,
		errHas:  `push.changes[1].new.target.hash: "d2a4c6e8"`,
	}, {
		name:    "change with neither side",
		headers: event("repo:push"),
		body:    changes(`{"new":null,"old":null}`),
		wantErr: ErrMalformed,
		errHas:  "push.changes[0]: neither new nor old is set",
	}, {
		name:    "change without a type",
		headers: event("repo:push"),
		body:    changes(`{"old":{"name":"main","target":{"hash":"d2a4c6e8f0b1d3f5a7c9e1b3d5f7a9c0e2b4d6f8"}}}`),
		wantErr: ErrMalformed,
		errHas:  "push.changes[0].old.type: missing",
	}, {
		name:    "too many changes",
		headers: event("repo:push"),
		body:    changes(strings.Split(strings.Repeat(update+"\n", maxPushChanges+1), "\n")[:maxPushChanges+1]...),
		wantErr: ErrMalformed,
		errHas:  "push.changes: 65 changes, at most 64",
	}, {
		name:    "full_name not workspace/slug",
		headers: event("repo:push"),
		body:    `{"push":{"changes":[]},"repository":{"full_name":"acme team/platform config","links":{"html":{"href":"https://bitbucket.org/x/y"}}}}`,
		wantErr: ErrMalformed,
		errHas:  "repository.full_name",
	}, {
		name:    "no repository",
		headers: event("repo:push"),
		body:    `{"push":{"changes":[]}}`,
		wantErr: ErrMalformed,
		errHas:  "payload names no repository URL",
	}, {
		name:    "not JSON",
		headers: event("repo:push"),
		body:    `<html>`,
		wantErr: ErrMalformed,
		errHas:  "body is not JSON",
	}})
}

func TestParseBitbucketServer(t *testing.T) {
	urls := []string{
		"ssh://git@bitbucket.example.net:7999/ops/gitops.git",
		"https://bitbucket.example.net/scm/ops/gitops.git",
	}
	event := func(key string) map[string]string {
		return map[string]string{"X-Event-Key": key, "X-Request-Id": "2c1e5a0b-9f3d-4b7e-8a6c-1d0f9e8b7a6c"}
	}
	clone := func(n int) string {
		var links []string
		for i := range n {
			links = append(links, fmt.Sprintf(`{"href":"https://bitbucket.example.net/scm/ops/r%d.git","name":"http"}`, i))
		}
		return `{"repository":{"links":{"clone":[` + strings.Join(links, ",") + `]}},"changes":[]}`
	}
	runParseCases(t, "bitbucket-server", []parseCase{{
		name:    "refs changed",
		headers: event("repo:refs_changed"),
		payload: "bitbucket-server-refs-changed.json",
		want: &Push{
			Provider:   "bitbucket-server",
			DeliveryID: "2c1e5a0b-9f3d-4b7e-8a6c-1d0f9e8b7a6c",
			URLs:       urls,
			Changes: []Change{
				{Ref: "refs/heads/master", Commit: "61f0a2c4e6b8d0f1a3c5e7b9d1f3a5c7e9b0d2f4"},
				{Ref: "refs/tags/v3.1.0", Commit: "61f0a2c4e6b8d0f1a3c5e7b9d1f3a5c7e9b0d2f4"},
				{Ref: "refs/heads/hotfix/dns", Deleted: true},
			},
		},
	}, {
		name:    "test connection",
		headers: event("diagnostics:ping"),
		payload: "bitbucket-server-ping.json",
		want:    &Push{Provider: "bitbucket-server", DeliveryID: "2c1e5a0b-9f3d-4b7e-8a6c-1d0f9e8b7a6c", Ping: true},
	}, {
		name:    "refId when ref is absent",
		headers: event("repo:refs_changed"),
		body:    `{"repository":{"links":{"clone":[{"href":"https://bitbucket.example.net/scm/ops/gitops.git"}]}},"changes":[{"refId":"refs/heads/main","toHash":"61F0A2C4E6B8D0F1A3C5E7B9D1F3A5C7E9B0D2F4","type":"UPDATE"}]}`,
		want: &Push{Provider: "bitbucket-server", DeliveryID: "2c1e5a0b-9f3d-4b7e-8a6c-1d0f9e8b7a6c", URLs: urls[1:], Changes: []Change{
			{Ref: "refs/heads/main", Commit: "61f0a2c4e6b8d0f1a3c5e7b9d1f3a5c7e9b0d2f4"},
		}},
	}, {
		name:    "other event",
		headers: event("pr:opened"),
		payload: "bitbucket-server-refs-changed.json",
		wantErr: ErrIgnoredEvent,
		errHas:  `"pr:opened"`,
	}, {
		name:    "no event header",
		payload: "bitbucket-server-refs-changed.json",
		wantErr: ErrMalformed,
		errHas:  "X-Event-Key",
	}, {
		name:    "sixteen clone links",
		headers: event("repo:refs_changed"),
		body:    clone(maxPushURLs),
		want: &Push{Provider: "bitbucket-server", DeliveryID: "2c1e5a0b-9f3d-4b7e-8a6c-1d0f9e8b7a6c", URLs: func() []string {
			var u []string
			for i := range maxPushURLs {
				u = append(u, fmt.Sprintf("https://bitbucket.example.net/scm/ops/r%d.git", i))
			}
			return u
		}()},
	}, {
		name:    "too many clone links",
		headers: event("repo:refs_changed"),
		body:    clone(maxPushURLs + 1),
		wantErr: ErrMalformed,
		errHas:  "repository.links.clone: 17 links, at most 16",
	}, {
		name:    "bad toHash names the change",
		headers: event("repo:refs_changed"),
		body:    `{"repository":{"links":{"clone":[{"href":"https://h/scm/p/r.git"}]}},"changes":[{"ref":{"id":"refs/heads/a"},"toHash":"61f0a2c4e6b8d0f1a3c5e7b9d1f3a5c7e9b0d2f4"},{"ref":{"id":"refs/heads/b"},"toHash":"nope","type":"UPDATE"}]}`,
		wantErr: ErrMalformed,
		errHas:  `changes[1].toHash: "nope"`,
	}, {
		name:    "ref without refs/",
		headers: event("repo:refs_changed"),
		body:    `{"repository":{"links":{"clone":[{"href":"https://h/scm/p/r.git"}]}},"changes":[{"ref":{"id":"master"},"toHash":"61f0a2c4e6b8d0f1a3c5e7b9d1f3a5c7e9b0d2f4"}]}`,
		wantErr: ErrMalformed,
		errHas:  `changes[0].ref.id: "master" is not a full ref name`,
	}, {
		name:    "changes of the wrong type",
		headers: event("repo:refs_changed"),
		body:    `{"changes":{"ref":"refs/heads/main"}}`,
		wantErr: ErrMalformed,
		errHas:  "changes: want an array, got JSON object",
	}})
}

func FuzzBitbucket(f *testing.F) {
	fuzzProvider(f, "bitbucket", []string{"X-Event-Key"}, []string{"repo:push", "repo:fork", ""})
}

func FuzzBitbucketServer(f *testing.F) {
	fuzzProvider(f, "bitbucket-server", []string{"X-Event-Key"}, []string{"repo:refs_changed", "diagnostics:ping", "pr:opened", ""})
}
