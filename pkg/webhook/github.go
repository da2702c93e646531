package webhook

import "net/http"

// GitHub (and GitHub Enterprise Server) signs the body with HMAC-SHA256 in
// X-Hub-Signature-256; the legacy SHA-1 X-Hub-Signature is not accepted.
// https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries
var githubProvider = &provider{
	name:   githubName,
	verify: verifyPrefixedHeader("X-Hub-Signature-256"),
	parse:  parseGitHub,
}

// githubPushPayload is the part of a push event alumiini reads.
type githubPushPayload struct {
	Ref        string `json:"ref"`
	After      string `json:"after"`
	Deleted    bool   `json:"deleted"`
	Repository struct {
		CloneURL string `json:"clone_url"`
		SSHURL   string `json:"ssh_url"`
		GitURL   string `json:"git_url"`
		HTMLURL  string `json:"html_url"`
	} `json:"repository"`
}

// parseGitHub reads a push or ping event.
func parseGitHub(h http.Header, body []byte) (*Push, error) {
	push := &Push{Provider: githubName, DeliveryID: deliveryID(h, "X-GitHub-Delivery")}
	switch event := h.Get("X-GitHub-Event"); event {
	case "push":
	case "ping":
		// Sent once when the hook is created. A repository hook's ping
		// names the repository, so that its own secret can verify the ping;
		// an organization hook's does not, and neither fails the ping.
		push.Ping = true
		var p githubPushPayload
		if decodePayload(body, &p) == nil {
			push.URLs, _ = collectURLs(p.Repository.CloneURL, p.Repository.SSHURL, p.Repository.GitURL, p.Repository.HTMLURL)
		}
		return push, nil
	case "":
		return nil, missingEventHeader("X-GitHub-Event")
	default:
		// Other events name their repository too: returned with the error,
		// its URLs let a per-repository secret verify the delivery, so a hook
		// that sends every event is answered 202, not 401.
		var p githubPushPayload
		if decodePayload(body, &p) == nil {
			push.URLs, _ = collectURLs(p.Repository.CloneURL, p.Repository.SSHURL, p.Repository.GitURL, p.Repository.HTMLURL)
			return push, ignoredEvent(event)
		}
		return nil, ignoredEvent(event)
	}

	var p githubPushPayload
	if err := decodePayload(body, &p); err != nil {
		return nil, err
	}
	urls, err := collectURLs(p.Repository.CloneURL, p.Repository.SSHURL, p.Repository.GitURL, p.Repository.HTMLURL)
	if err != nil {
		return nil, err
	}
	cs, err := validChanges([]refUpdate{{refField: "ref", ref: p.Ref, commitField: "after", commit: p.After, deleted: p.Deleted}})
	if err != nil {
		return nil, err
	}
	push.URLs, push.Changes = urls, cs
	return push, nil
}
