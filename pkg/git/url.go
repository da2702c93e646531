package git

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/validation"
)

// endpoint is how go-git reads raw, nil when it cannot. What it reads decides
// the transport and the host, so alumiini's own choices (the SSH meter, the
// user, the host key algorithms) follow it rather than a parse of their own
// that might differ.
func endpoint(raw string) *transport.Endpoint {
	ep, err := transport.NewEndpoint(raw)
	if err != nil {
		return nil
	}
	return ep
}

// isSSH reports whether go-git reaches raw over SSH: an ssh:// (any case) or
// scp-like [user@]host:path URL.
func isSSH(raw string) bool {
	ep := endpoint(raw)
	return ep != nil && ep.Protocol == "ssh"
}

// reachable refuses a URL that go-git would reach other than over HTTP or
// SSH, which validation refuses already: go-git reads anything neither a
// scheme:// URL nor scp-like as a local path.
func reachable(raw string) error {
	if ep := endpoint(raw); ep != nil {
		switch ep.Protocol {
		case "http", "https", "ssh":
			return nil
		}
	}
	return newError(ReasonFetchFailed, nil, "%s: alumiini reaches git servers only over http(s) and ssh, and go-git reads this URL as a local path or another protocol", redact(raw))
}

// sshUser is the user of an SSH URL, "git" when it names none.
func sshUser(raw string) string {
	if ep := endpoint(raw); ep != nil && ep.User != "" {
		return ep.User
	}
	return "git"
}

// sshAddress is the host:port an SSH URL connects to.
func sshAddress(raw string) string {
	ep := endpoint(raw)
	if ep == nil {
		return ""
	}
	port := ep.Port
	if port == 0 {
		port = 22
	}
	// go-git keeps an IPv6 host in brackets; JoinHostPort adds its own.
	return net.JoinHostPort(strings.Trim(ep.Host, "[]"), strconv.Itoa(port))
}

// NormalizeURL folds the spellings of one repository URL that git treats as
// the same (scheme and host case, a trailing slash), so they share a store
// and a poll.
func NormalizeURL(raw string) string {
	raw = strings.TrimSuffix(raw, "/")
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return raw
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	return u.String()
}

// redact hides any credential a URL carries before it is printed.
func redact(raw string) string { return validation.RedactURL(raw) }
