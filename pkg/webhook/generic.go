package webhook

import (
	"net/http"
	"strings"
)

// The generic provider is for senders without a hook of their own (a CI
// job, a script): they sign the body as GitHub does, under X-Signature-256,
// and post {"url": ..., "ref": ..., "after": ...}. There is no event header
// and no ping.
var genericProvider = &provider{
	name:   genericName,
	verify: verifyPrefixedHeader("X-Signature-256"),
	parse:  parseGeneric,
}

// genericPushPayload is the whole generic payload.
type genericPushPayload struct {
	URL   string `json:"url"`
	Ref   string `json:"ref"`
	After string `json:"after"`
}

// parseGeneric reads a generic push. ref may be a full ref or, for brevity,
// a branch name.
func parseGeneric(h http.Header, body []byte) (*Push, error) {
	push := &Push{Provider: genericName, DeliveryID: deliveryID(h, "X-Delivery-Id")}
	var p genericPushPayload
	if err := decodePayload(body, &p); err != nil {
		return nil, err
	}
	urls, err := collectURLs(p.URL)
	if err != nil {
		return nil, err
	}
	ref := p.Ref
	if ref != "" && !strings.HasPrefix(ref, "refs/") {
		ref = branchRefPrefix + ref
	}
	cs, err := validChanges([]refUpdate{{refField: "ref", ref: ref, commitField: "after", commit: p.After}})
	if err != nil {
		return nil, err
	}
	push.URLs, push.Changes = urls, cs
	return push, nil
}
