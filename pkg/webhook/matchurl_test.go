package webhook

import (
	"strings"
	"testing"
	"unicode"
)

// matchKeyCases are MatchKey's table, and FuzzMatchKey's seeds.
var matchKeyCases = []struct {
	raw, want string
}{
	// Every spelling of one GitHub repository.
	{"https://GitHub.com/Org/Repo.git", "github.com/org/repo"},
	{"ssh://git@github.com:22/org/repo", "github.com/org/repo"},
	{"git@github.com:org/repo.git", "github.com/org/repo"},
	{"git://github.com/org/repo", "github.com/org/repo"},
	{"http://github.com/org/repo/", "github.com/org/repo"},
	{"https://x-access-token:ghs_abc@github.com/org/repo", "github.com/org/repo"},
	{"git+ssh://git@github.com/org/repo.git", "github.com/org/repo"},
	{"HTTPS://GITHUB.COM/ORG/REPO.GIT/", "github.com/org/repo"},
	{"github.com:org/repo", "github.com/org/repo"},
	{"https://github.com./org/repo", "github.com/org/repo"},
	{"https://github.com//org//repo.git//", "github.com/org/repo"},
	{"https://github.com/org/repo.git?ref=main#readme", "github.com/org/repo"},
	{"  https://github.com/org/repo\n", "github.com/org/repo"},
	{"https://github.com/org/repo.git.git", "github.com/org/repo"},

	// IPv6 hosts keep their brackets, in canonical form.
	{"ssh://git@[::1]:2222/org/repo", "[::1]/org/repo"},
	{"git@[::1]:org/repo.git", "[::1]/org/repo"},
	{"[::1]:org/repo", "[::1]/org/repo"},
	{"https://[0:0:0:0:0:0:0:1]:8443/org/repo", "[::1]/org/repo"},
	{"https://[2001:DB8::A]/Org/Repo", "[2001:db8::a]/org/repo"},
	{"ssh://git@[fe80::1%25eth0]/org/repo", "[fe80::1]/org/repo"},

	// Other hosts, users and paths.
	{"deploy@GitLab.Example.com:Platform/Sub/Cluster-Config.git", "gitlab.example.com/platform/sub/cluster-config"},
	{"https://gitlab.example.com/platform/sub/cluster-config", "gitlab.example.com/platform/sub/cluster-config"},
	{"ssh://git@git.example.org:2222/infra/fleet.git", "git.example.org/infra/fleet"},
	{"https://10.0.0.7:3000/infra/fleet", "10.0.0.7/infra/fleet"},
	{"https://dev.azure.com/org/project/_git/repo", "dev.azure.com/org/project/_git/repo"},
	{"git@host:~user/repo.git", "host/~user/repo"},
	{"https://gitea.internal/infra/fleet", "gitea.internal/infra/fleet"},
	{"https://bücher.example/team/repo", "bücher.example/team/repo"},

	// Bitbucket Server: the http link has /scm/, the ssh one not. Both are
	// in the payload, so either in a GitRepository matches.
	{"https://bitbucket.example.net/scm/ops/gitops.git", "bitbucket.example.net/scm/ops/gitops"},
	{"ssh://git@bitbucket.example.net:7999/ops/gitops.git", "bitbucket.example.net/ops/gitops"},

	// Not repository URLs.
	{"", ""},
	{"   ", ""},
	{"not a url", ""},
	{"https://host", ""},
	{"https://host/", ""},
	{"https://host/.git", ""},
	{"https:///org/repo", ""},
	{"file:///srv/git/repo.git", ""},
	{"/srv/git/repo.git", ""},
	{"./repo", ""},
	{"repo", ""},
	{"github.com/org/repo", ""},
	{"./a:b", ""},
	{`C:\repos\config`, ""},
	{"git@host:", ""},
	{"git@:org/repo", ""},
	{"ssh://git@[::1/org/repo", ""},
	{"git@[::1]org/repo", ""},
	{"git@[not-an-ip]:org/repo", ""},
	{"https://[10.0.0.1]/org/repo", ""},
	{"https://ho st/org/repo", ""},
	{"git@ho st:org/repo", ""},
	{"git@host!:org/repo", ""},
	{"https://host/org/re po", ""},
	{"https://host/org/a/../b", ""},
	{"https://host/org/%2e%2e/b", ""},
	{"https://host/org/repo%3Fx", ""},
	{"https://host/org/re\x00po", ""},
	{"git@host:org/re\tpo", ""},
	{"https://host/org/\xffrepo", ""},
	{"https://host/" + strings.Repeat("a", maxURLBytes), ""},
	{"https://host:notaport/org/repo", ""},
	{"a://../0", ""},
	{"https://.example.com/org/repo", ""},
	{"https://example..com/org/repo", ""},
	{"git@example.com..:org/repo", ""},
}

func TestMatchKey(t *testing.T) {
	for _, tc := range matchKeyCases {
		if got := MatchKey(tc.raw); got != tc.want {
			t.Errorf("MatchKey(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

// FuzzMatchKey checks that a key is what MatchKey documents and that it
// names the repository itself: written as an ssh URL, it gives itself back.
func FuzzMatchKey(f *testing.F) {
	for _, tc := range matchKeyCases {
		f.Add(tc.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		key := MatchKey(raw)
		if key == "" {
			return
		}
		host, path, ok := strings.Cut(key, "/")
		if !ok || host == "" || path == "" {
			t.Fatalf("MatchKey(%q) = %q: no host/path", raw, key)
		}
		if strings.HasPrefix(path, "/") || strings.HasSuffix(key, "/") || strings.Contains(key, "//") || strings.HasSuffix(key, ".git") {
			t.Errorf("MatchKey(%q) = %q: stray slash or .git", raw, key)
		}
		for _, r := range key {
			if unicode.IsUpper(r) || unicode.IsSpace(r) || unicode.IsControl(r) {
				t.Errorf("MatchKey(%q) = %q: has %q", raw, key, r)
			}
		}
		if len("ssh://"+key) > maxURLBytes {
			return
		}
		if again := MatchKey("ssh://" + key); again != key {
			t.Errorf("MatchKey(%q) = %q, but MatchKey(ssh://%s) = %q", raw, key, key, again)
		}
	})
}
