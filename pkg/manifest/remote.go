package manifest

import "strings"

// remoteForm says why kustomize's loader could treat location as something
// to fetch rather than a path on its file system, or "" if it cannot.
//
// The loader (api/internal/loader, not importable) fetches a location over
// http(s) when url.Parse finds an http or https scheme (IsRemoteFile), and
// runs `git clone` when git.NewRepoSpecFromURL accepts it: an optional
// "git::" prefix, then a scheme (ssh, https, http, file), a "user@" prefix,
// or a "github.com/" or "github.com:" host, in any letter case. Each test
// below covers one of those and more: a colon or "@" in the first segment
// (scp-like "host:path", "http:x"), "://" or "::" anywhere. A local file
// whose first segment holds ":" or "@" is refused too; that is the price of
// never being one spelling behind the loader.
func remoteForm(location string) string {
	lower := strings.ToLower(strings.TrimSpace(location))
	first, _, _ := strings.Cut(lower, "/")
	switch {
	case strings.Contains(lower, "://"):
		return "a URL"
	case strings.Contains(lower, "::"):
		return "a git URL with a forced protocol"
	case strings.Contains(first, "@"):
		return "a git remote with a user name"
	case strings.Contains(first, ":"):
		return "an scp-like git remote or a URL"
	case first == "github.com":
		return "a GitHub repository"
	}
	return ""
}
