package webhook

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// GitLab signs nothing: X-Gitlab-Token carries the secret itself.
// https://docs.gitlab.com/user/project/integrations/webhooks/
// https://docs.gitlab.com/user/project/integrations/webhook_events/
var gitlabProvider = &provider{
	name:   gitlabName,
	verify: verifyGitLab,
	parse:  parseGitLab,
}

// verifyGitLab compares digests of the token and the secret rather than the
// strings, so the comparison takes the same time whatever their lengths.
func verifyGitLab(h http.Header, _ []byte, secret []byte) bool {
	token := h.Get("X-Gitlab-Token")
	if token == "" || len(secret) == 0 {
		return false
	}
	got := sha256.Sum256([]byte(token))
	want := sha256.Sum256(secret)
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// gitlabPushPayload is the part of a Push Hook or Tag Push Hook (or a System
// Hook of object_kind push or tag_push) alumiini reads. project is current;
// repository and project's http_url/ssh_url are deprecated but still sent.
type gitlabPushPayload struct {
	ObjectKind  string `json:"object_kind"`
	Ref         string `json:"ref"`
	After       string `json:"after"`
	CheckoutSHA string `json:"checkout_sha"`
	Project     struct {
		GitHTTPURL string `json:"git_http_url"`
		GitSSHURL  string `json:"git_ssh_url"`
		WebURL     string `json:"web_url"`
		HTTPURL    string `json:"http_url"`
		SSHURL     string `json:"ssh_url"`
	} `json:"project"`
	Repository struct {
		GitHTTPURL string `json:"git_http_url"`
		GitSSHURL  string `json:"git_ssh_url"`
		Homepage   string `json:"homepage"`
		URL        string `json:"url"`
	} `json:"repository"`
}

// parseGitLab reads a push or tag push. GitLab has no ping: its "Test"
// button sends an ordinary push payload.
func parseGitLab(h http.Header, body []byte) (*Push, error) {
	// X-Gitlab-Event-UUID is shared by the hooks one event fires, like
	// GitHub's delivery id; X-Gitlab-Webhook-UUID is per request.
	push := &Push{Provider: gitlabName, DeliveryID: deliveryID(h, "X-Gitlab-Event-UUID", "X-Gitlab-Webhook-UUID")}
	event := h.Get("X-Gitlab-Event")
	switch event {
	case "Push Hook", "Tag Push Hook", "System Hook":
	case "":
		return nil, missingEventHeader("X-Gitlab-Event")
	default:
		return nil, ignoredEvent(event)
	}

	var p gitlabPushPayload
	if err := decodePayload(body, &p); err != nil {
		return nil, err
	}
	// A system hook carries every instance event; only pushes count. A
	// project hook's object_kind is not checked: its Test button has sent
	// "push" for tag pushes.
	if event == "System Hook" && p.ObjectKind != "push" && p.ObjectKind != "tag_push" {
		return nil, ignoredEvent(event + "/" + p.ObjectKind)
	}
	urls, err := collectURLs(
		p.Project.GitHTTPURL, p.Project.GitSSHURL, p.Project.WebURL, p.Project.HTTPURL, p.Project.SSHURL,
		p.Repository.GitHTTPURL, p.Repository.GitSSHURL, p.Repository.Homepage, p.Repository.URL,
	)
	if err != nil {
		return nil, err
	}
	// For an annotated tag, after is the tag object and checkout_sha the
	// commit it points at, which is what a sync ends up at; for a branch the
	// two are equal, and for a deletion checkout_sha is null.
	u := refUpdate{refField: "ref", ref: p.Ref, commitField: "after", commit: p.After, deleted: p.After == zeroCommit}
	if !u.deleted && p.CheckoutSHA != "" {
		u.commitField, u.commit = "checkout_sha", p.CheckoutSHA
	}
	cs, err := validChanges([]refUpdate{u})
	if err != nil {
		return nil, err
	}
	push.URLs, push.Changes = urls, cs
	return push, nil
}
