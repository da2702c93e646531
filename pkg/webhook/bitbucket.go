package webhook

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Bitbucket Cloud and Bitbucket Server / Data Center both sign the body with
// HMAC-SHA256 in X-Hub-Signature ("sha256=<hex>", not GitHub's SHA-1 header
// of that name) and name the event in X-Event-Key; their payloads differ.
// https://support.atlassian.com/bitbucket-cloud/docs/event-payloads/
// https://confluence.atlassian.com/bitbucketserver/event-payload-938025882.html
// https://confluence.atlassian.com/bitbucketserver/manage-webhooks-938025878.html
var (
	bitbucketProvider = &provider{
		name:   bitbucketName,
		verify: verifyPrefixedHeader("X-Hub-Signature"),
		parse:  parseBitbucket,
	}
	bitbucketServerProvider = &provider{
		name:   bitbucketServerName,
		verify: verifyPrefixedHeader("X-Hub-Signature"),
		parse:  parseBitbucketServer,
	}
)

// bitbucketPushPayload is the part of a Bitbucket Cloud repo:push event
// alumiini reads. The payload carries no clone URL: they are derived from
// full_name and the host of the html link.
type bitbucketPushPayload struct {
	Push struct {
		Changes []struct {
			New *bitbucketRefState `json:"new"`
			Old *bitbucketRefState `json:"old"`
		} `json:"changes"`
	} `json:"push"`
	Repository struct {
		FullName string `json:"full_name"`
		Links    struct {
			HTML struct {
				Href string `json:"href"`
			} `json:"html"`
		} `json:"links"`
	} `json:"repository"`
}

// bitbucketRefState is one side of a Bitbucket Cloud ref change.
type bitbucketRefState struct {
	Type   string `json:"type"`
	Name   string `json:"name"`
	Target struct {
		Hash string `json:"hash"`
	} `json:"target"`
}

// parseBitbucket reads a Bitbucket Cloud repo:push. Bitbucket Cloud has no
// ping or test event.
func parseBitbucket(h http.Header, body []byte) (*Push, error) {
	// X-Hook-UUID names the webhook, not the delivery: every push through
	// one hook carries the same one, so it is no delivery id.
	push := &Push{Provider: bitbucketName, DeliveryID: deliveryID(h, "X-Request-UUID")}
	switch event := h.Get("X-Event-Key"); event {
	case "repo:push":
	case "":
		return nil, missingEventHeader("X-Event-Key")
	default:
		return nil, ignoredEvent(event)
	}

	var p bitbucketPushPayload
	if err := decodePayload(body, &p); err != nil {
		return nil, err
	}
	https, ssh, err := bitbucketCloneURLs(p.Repository.Links.HTML.Href, p.Repository.FullName)
	if err != nil {
		return nil, err
	}
	urls, err := collectURLs(p.Repository.Links.HTML.Href, https, ssh)
	if err != nil {
		return nil, err
	}

	if err := checkChangeCount("push.changes", len(p.Push.Changes)); err != nil {
		return nil, err
	}
	var updates []refUpdate
	for i, c := range p.Push.Changes {
		field := fmt.Sprintf("push.changes[%d]", i)
		// new is null when the push deleted the ref; old is null when it
		// created it.
		side, state := ".new", c.New
		if state == nil {
			side, state = ".old", c.Old
		}
		if state == nil {
			return nil, malformed(field, "neither new nor old is set")
		}
		prefix := ""
		switch state.Type {
		case "branch":
			prefix = branchRefPrefix
		case "tag":
			prefix = tagRefPrefix
		case "":
			return nil, malformed(field+side+".type", "missing")
		default:
			// Mercurial named branches and bookmarks: no git ref.
			continue
		}
		if state.Name == "" {
			return nil, malformed(field+side+".name", "missing")
		}
		updates = append(updates, refUpdate{
			refField:    field + side + ".name",
			ref:         prefix + state.Name,
			commitField: field + side + ".target.hash",
			commit:      state.Target.Hash,
			deleted:     c.New == nil,
		})
	}
	cs, err := validChanges(updates)
	if err != nil {
		return nil, err
	}
	push.URLs, push.Changes = urls, cs
	return push, nil
}

// bitbucketCloneURLs derives the https and scp-like clone URLs of a
// Bitbucket Cloud repository from its web link and "workspace/slug" name.
// Either is "" when the payload lacks what it is made from.
func bitbucketCloneURLs(htmlHref, fullName string) (https, ssh string, err error) {
	if fullName == "" {
		return "", "", nil
	}
	workspace, slug, ok := strings.Cut(fullName, "/")
	if !ok || !bitbucketSlug(workspace) || !bitbucketSlug(slug) {
		return "", "", malformed("repository.full_name", "%s is not workspace/slug", quoteUntrusted(fullName))
	}
	u, err := url.Parse(htmlHref)
	if err != nil || u.Hostname() == "" {
		return "", "", nil
	}
	return "https://" + u.Host + "/" + fullName + ".git", "git@" + u.Hostname() + ":" + fullName + ".git", nil
}

// bitbucketSlug reports whether s can be a workspace id or repository slug,
// which Bitbucket limits to letters, digits, '-', '_' and '.'.
func bitbucketSlug(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// bitbucketServerPayload is the part of a Bitbucket Server / Data Center
// repo:refs_changed event alumiini reads. The http clone link has the
// /scm/ prefix and the ssh one has not, so their MatchKeys differ; both are
// kept and a GitRepository naming either matches.
type bitbucketServerPayload struct {
	Repository struct {
		Links struct {
			Clone []struct {
				Href string `json:"href"`
			} `json:"clone"`
		} `json:"links"`
	} `json:"repository"`
	Changes []struct {
		Ref struct {
			ID string `json:"id"`
		} `json:"ref"`
		RefID  string `json:"refId"`
		ToHash string `json:"toHash"`
		Type   string `json:"type"`
	} `json:"changes"`
}

// parseBitbucketServer reads a repo:refs_changed event or the
// diagnostics:ping that "Test connection" sends.
func parseBitbucketServer(h http.Header, body []byte) (*Push, error) {
	push := &Push{Provider: bitbucketServerName, DeliveryID: deliveryID(h, "X-Request-Id")}
	switch event := h.Get("X-Event-Key"); event {
	case "repo:refs_changed":
	case "diagnostics:ping":
		push.Ping = true
		return push, nil
	case "":
		return nil, missingEventHeader("X-Event-Key")
	default:
		return nil, ignoredEvent(event)
	}

	var p bitbucketServerPayload
	if err := decodePayload(body, &p); err != nil {
		return nil, err
	}
	clone := p.Repository.Links.Clone
	if len(clone) > maxPushURLs {
		return nil, malformed("repository.links.clone", "%d links, at most %d", len(clone), maxPushURLs)
	}
	hrefs := make([]string, len(clone))
	for i, link := range clone {
		hrefs[i] = link.Href
	}
	urls, err := collectURLs(hrefs...)
	if err != nil {
		return nil, err
	}

	if err := checkChangeCount("changes", len(p.Changes)); err != nil {
		return nil, err
	}
	updates := make([]refUpdate, len(p.Changes))
	for i, c := range p.Changes {
		field := fmt.Sprintf("changes[%d]", i)
		u := refUpdate{
			refField:    field + ".ref.id",
			ref:         c.Ref.ID,
			commitField: field + ".toHash",
			commit:      c.ToHash,
			deleted:     c.Type == "DELETE",
		}
		if u.ref == "" {
			u.refField, u.ref = field+".refId", c.RefID
		}
		updates[i] = u
	}
	cs, err := validChanges(updates)
	if err != nil {
		return nil, err
	}
	push.URLs, push.Changes = urls, cs
	return push, nil
}
