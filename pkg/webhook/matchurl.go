package webhook

import (
	"net/netip"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MatchKey folds every spelling of a repository URL to one key: scheme, user
// and port dropped, host and path lowercased, leading/trailing slashes and a
// trailing ".git" removed. https://GitHub.com/Org/Repo.git,
// ssh://git@github.com:22/org/repo, git@github.com:org/repo.git,
// git://github.com/org/repo and http://github.com/org/repo/ all give
// "github.com/org/repo". An IPv6 host keeps its brackets:
// ssh://git@[::1]:2222/org/repo gives "[::1]/org/repo".
//
// It returns "" for something that is not a repository URL (no host or no
// path), for a local path, for a URL longer than 2048 bytes and for a path
// with "." or ".." segments, whitespace, control characters, '\', '%', '?'
// or '#'.
//
// A server that serves one repository under paths that differ by more than
// this (Bitbucket Server's https://host/scm/proj/repo.git against
// ssh://git@host:7999/proj/repo.git) gives two keys; such providers put every
// clone link in the payload, so either spelling in a GitRepository matches.
func MatchKey(raw string) string {
	s := strings.TrimSpace(raw)
	if s == "" || len(s) > maxURLBytes || !utf8.ValidString(s) {
		return ""
	}
	var host, path string
	if strings.Contains(s, "://") {
		host, path = splitSchemeURL(s)
	} else {
		host, path = splitSCPURL(s)
	}
	host, path = matchHost(host), matchPath(path)
	if host == "" || path == "" {
		return ""
	}
	return host + "/" + path
}

// splitSchemeURL splits scheme://[user@]host[:port]/path.
func splitSchemeURL(s string) (host, path string) {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" {
		return "", ""
	}
	host = u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host, u.Path
}

// splitSCPURL splits git's scp-like [user@]host:path and
// [user@][ipv6]:path. As in git, it is scp-like only if the colon comes
// before any slash; otherwise it is a local path.
func splitSCPURL(s string) (host, path string) {
	// An '@' after the host's colon or the path's first slash is part of
	// the path.
	if at := strings.IndexByte(s, '@'); at >= 0 {
		if end := strings.IndexAny(s, ":/["); end < 0 || at < end {
			s = s[at+1:]
		}
	}
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 || !strings.HasPrefix(s[end+1:], ":") {
			return "", ""
		}
		return s[:end+1], s[end+2:]
	}
	colon := strings.IndexByte(s, ':')
	if colon <= 0 {
		return "", ""
	}
	if slash := strings.IndexByte(s, '/'); slash >= 0 && slash < colon {
		return "", ""
	}
	return s[:colon], s[colon+1:]
}

// matchHost lowercases a host name, drops the dot of a fully qualified one
// and writes an IPv6 address, given in brackets, in its canonical form
// without zone. It returns "" for anything else, an empty label included.
func matchHost(host string) string {
	if inner, ok := strings.CutPrefix(host, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		addr, err := netip.ParseAddr(inner)
		if !ok || err != nil || !addr.Is6() {
			return ""
		}
		return "[" + addr.WithZone("").String() + "]"
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || strings.HasPrefix(host, ".") || strings.HasSuffix(host, ".") || strings.Contains(host, "..") {
		return ""
	}
	for _, r := range host {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '-', r == '.', r == '_':
		case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)):
		default:
			return ""
		}
	}
	return host
}

// matchPath lowercases a repository path, drops empty segments (so leading,
// trailing and doubled slashes) and a trailing ".git", and returns "" for
// a path that is empty or has a segment or character no hosted repository
// path has.
func matchPath(path string) string {
	path = strings.ToLower(path)
	for _, r := range path {
		if unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(`\%?#`, r) {
			return ""
		}
	}
	var segs []string
	for seg := range strings.SplitSeq(path, "/") {
		switch seg {
		case "":
			continue
		case ".", "..":
			return ""
		}
		segs = append(segs, seg)
	}
	for len(segs) > 0 {
		last := &segs[len(segs)-1]
		trimmed, ok := strings.CutSuffix(*last, ".git")
		if !ok {
			break
		}
		if *last = trimmed; trimmed == "" {
			segs = segs[:len(segs)-1]
		}
	}
	return strings.Join(segs, "/")
}
