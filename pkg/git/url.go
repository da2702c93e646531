package git

import (
	"net"
	"net/url"
	"strings"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/validation"
)

// isSSH reports whether raw is an ssh:// or scp-like user@host:path URL.
func isSSH(raw string) bool {
	if strings.HasPrefix(raw, "ssh://") {
		return true
	}
	if strings.Contains(raw, "://") {
		return false
	}
	at := strings.LastIndex(raw, "@")
	colon := strings.LastIndex(raw, ":")
	return at > 0 && colon > at
}

// sshUser is the user of an SSH URL, "git" when it names none.
func sshUser(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Scheme == "ssh" {
		if u.User != nil && u.User.Username() != "" {
			return u.User.Username()
		}
		return "git"
	}
	if at := strings.LastIndex(raw, "@"); at > 0 {
		return raw[:at]
	}
	return "git"
}

// sshAddress is the host:port an SSH URL connects to.
func sshAddress(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Scheme == "ssh" {
		port := u.Port()
		if port == "" {
			port = "22"
		}
		return net.JoinHostPort(u.Hostname(), port)
	}
	rest := raw[strings.LastIndex(raw, "@")+1:]
	host, _, _ := strings.Cut(rest, ":")
	return net.JoinHostPort(host, "22")
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
