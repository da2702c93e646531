package webhook

import "net/http"

// Gitea, Forgejo and Gogs share one payload and differ in header names.
// Each sends the bare hex HMAC-SHA256 of the body under its own name (and
// Gitea and Forgejo also GitHub's "sha256=" form); one valid header suffices,
// since whoever can compute one can compute them all.
// https://docs.gitea.com/usage/webhooks
// https://forgejo.org/docs/latest/user/webhooks/
// https://gogs.io/advancing/webhooks
var giteaProvider = &provider{
	name:   giteaName,
	verify: verifyGitea,
	parse:  parseGitea,
}

var (
	giteaSignatureHeaders = []string{"X-Gitea-Signature", "X-Forgejo-Signature", "X-Gogs-Signature"}
	giteaEventHeaders     = []string{"X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event"}
	giteaDeliveryHeaders  = []string{"X-Gitea-Delivery", "X-Forgejo-Delivery", "X-Gogs-Delivery"}
)

func verifyGitea(h http.Header, body []byte, secret []byte) bool {
	want := bodyMAC(body, secret)
	for _, name := range giteaSignatureHeaders {
		if hexMACMatches(want, h.Get(name)) {
			return true
		}
	}
	return prefixedMACMatches(want, h.Get("X-Hub-Signature-256"))
}

// giteaPushPayload is the part of a push event alumiini reads; the shape
// follows GitHub's.
type giteaPushPayload struct {
	Ref        string `json:"ref"`
	After      string `json:"after"`
	Repository struct {
		CloneURL string `json:"clone_url"`
		SSHURL   string `json:"ssh_url"`
		HTMLURL  string `json:"html_url"`
	} `json:"repository"`
}

// parseGitea reads a push. None of the three has a ping event: "Test
// Delivery" sends a push of the head commit, which is read as one.
func parseGitea(h http.Header, body []byte) (*Push, error) {
	push := &Push{Provider: giteaName, DeliveryID: deliveryID(h, giteaDeliveryHeaders...)}
	switch event := firstHeader(h, giteaEventHeaders...); event {
	case "push":
	case "":
		return nil, missingEventHeader(giteaEventHeaders...)
	default:
		return nil, ignoredEvent(event)
	}

	var p giteaPushPayload
	if err := decodePayload(body, &p); err != nil {
		return nil, err
	}
	urls, err := collectURLs(p.Repository.CloneURL, p.Repository.SSHURL, p.Repository.HTMLURL)
	if err != nil {
		return nil, err
	}
	// The payload has no "deleted"; a deletion is an after of forty zeros.
	cs, err := validChanges([]refUpdate{{refField: "ref", ref: p.Ref, commitField: "after", commit: p.After}})
	if err != nil {
		return nil, err
	}
	push.URLs, push.Changes = urls, cs
	return push, nil
}
