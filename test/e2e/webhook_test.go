package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/gitserver"
)

// hookAnswer is the receiver's JSON answer.
type hookAnswer struct {
	Triggered []struct{ Namespace, Name, Ref, Commit string }
	Skipped   []struct{ Namespace, Name, Reason string }
	Message   string
	Error     string
}

func (a hookAnswer) names() string {
	var names []string
	for _, r := range a.Triggered {
		names = append(names, r.Namespace+"/"+r.Name)
	}
	for _, r := range a.Skipped {
		names = append(names, r.Namespace+"/"+r.Name+" (skipped: "+r.Reason+")")
	}
	return strings.Join(names, ", ")
}

func hmacHex(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// pushPayload builds a push of commit to ref of repo in the shape provider
// sends, with the headers that sign it with secret.
func pushPayload(provider, repo, ref, commit, secret string) ([]byte, http.Header) {
	url := cluster.Git.BaseURL() + "/" + repo + ".git"
	web := cluster.Git.BaseURL() + "/" + repo
	host := strings.TrimPrefix(cluster.Git.BaseURL(), "http://")
	hostOnly, _, _ := strings.Cut(host, ":")
	h := http.Header{"Content-Type": {"application/json"}}
	var body string
	switch provider {
	case "github":
		body = fmt.Sprintf(`{"ref":%q,"before":"%s","after":%q,"created":false,"deleted":false,"forced":false,
"repository":{"id":1,"name":%q,"full_name":"org/%s","private":true,"html_url":%q,"clone_url":%q,"ssh_url":"git@%s:%s.git","default_branch":"main"},
"pusher":{"name":"dev"},"head_commit":{"id":%q,"message":"change"}}`, ref, strings.Repeat("0", 40), commit, repo, repo, web, url, hostOnly, repo, commit)
		h.Set("X-GitHub-Event", "push")
		h.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
		h.Set("X-Hub-Signature-256", "sha256="+hmacHex(secret, []byte(body)))
	case "gitlab":
		body = fmt.Sprintf(`{"object_kind":"push","event_name":"push","before":"%s","after":%q,"ref":%q,"checkout_sha":%q,"user_username":"dev",
"project":{"id":15,"name":%q,"web_url":%q,"git_ssh_url":"git@%s:%s.git","git_http_url":%q,"path_with_namespace":%q,"default_branch":"main"},
"repository":{"name":%q,"url":"git@%s:%s.git","homepage":%q,"git_http_url":%q,"git_ssh_url":"git@%s:%s.git"},"total_commits_count":1}`,
			strings.Repeat("0", 40), commit, ref, commit, repo, web, hostOnly, repo, url, repo, repo, hostOnly, repo, web, url, hostOnly, repo)
		h.Set("X-Gitlab-Event", "Push Hook")
		h.Set("X-Gitlab-Event-UUID", "13792a34-cac6-4fda-95a8-c58e00a3954e")
		h.Set("X-Gitlab-Token", secret)
	case "gitea":
		body = fmt.Sprintf(`{"ref":%q,"before":"%s","after":%q,"compare_url":"","commits":[{"id":%q,"message":"change"}],"total_commits":1,
"repository":{"id":140,"name":%q,"full_name":"org/%s","html_url":%q,"ssh_url":"ssh://git@%s:2222/%s.git","clone_url":%q,"default_branch":"main"},
"pusher":{"login":"dev"},"sender":{"login":"dev"}}`, ref, strings.Repeat("0", 40), commit, commit, repo, repo, web, hostOnly, repo, url)
		h.Set("X-Gitea-Event", "push")
		h.Set("X-Forgejo-Event", "push")
		h.Set("X-Gitea-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473")
		h.Set("X-Gitea-Signature", hmacHex(secret, []byte(body)))
	case "bitbucket":
		kind, name := "branch", strings.TrimPrefix(ref, "refs/heads/")
		if strings.HasPrefix(ref, "refs/tags/") {
			kind, name = "tag", strings.TrimPrefix(ref, "refs/tags/")
		}
		body = fmt.Sprintf(`{"push":{"changes":[{"old":null,"new":{"type":%q,"name":%q,"target":{"type":"commit","hash":%q}},"created":true,"forced":false,"closed":false}]},
"repository":{"type":"repository","name":%q,"full_name":%q,"links":{"html":{"href":%q}},"is_private":true},"actor":{"display_name":"dev"}}`,
			kind, name, commit, repo, repo, web)
		h.Set("X-Event-Key", "repo:push")
		h.Set("X-Request-UUID", "afe3ba17-2e0a-4b7f-a9b4-1b2f7f3a0c11")
		h.Set("X-Hub-Signature", "sha256="+hmacHex(secret, []byte(body)))
	case "bitbucket-server":
		body = fmt.Sprintf(`{"eventKey":"repo:refs_changed","date":"2026-11-27T11:05:32+0200","actor":{"name":"dev"},
"repository":{"slug":%q,"name":%q,"project":{"key":"OPS"},"links":{"clone":[{"href":"ssh://git@%s:7999/%s.git","name":"ssh"},{"href":%q,"name":"http"}]}},
"changes":[{"ref":{"id":%q,"displayId":"x","type":"BRANCH"},"refId":%q,"fromHash":"%s","toHash":%q,"type":"UPDATE"}]}`,
			repo, repo, hostOnly, repo, url, ref, ref, strings.Repeat("1", 40), commit)
		h.Set("X-Event-Key", "repo:refs_changed")
		h.Set("X-Request-Id", "d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6")
		h.Set("X-Hub-Signature", "sha256="+hmacHex(secret, []byte(body)))
	case "generic":
		body = fmt.Sprintf(`{"url":%q,"ref":%q,"after":%q}`, url, ref, commit)
		h.Set("X-Signature-256", "sha256="+hmacHex(secret, []byte(body)))
	}
	return []byte(body), h
}

func sendHook(t *testing.T, provider string, body []byte, h http.Header) (int, hookAnswer) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, cluster.WebhookURL+"/hooks/"+provider, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var answer hookAnswer
	_ = json.Unmarshal(data, &answer)
	if answer.Message == "" && answer.Error == "" {
		answer.Message = string(data)
	}
	return resp.StatusCode, answer
}

// hookedRepository is readyRepository with a 24h interval, so only a
// webhook (or a request) can make it sync during the test.
func hookedRepository(t *testing.T, namespace, name, repo, extra string) {
	t.Helper()
	createNamespace(t, name)
	kubectlInput(t, `apiVersion: alumiini.false.systems/v1alpha1
kind: GitRepository
metadata:
  name: `+name+`
  namespace: `+namespace+`
spec:
  url: `+cluster.Git.BaseURL()+`/`+repo+`.git
  path: deploy
  interval: 24h
  targetNamespace: `+name+`
`+extra, "apply", "-f", "-")
	kubectl(t, "wait", "--for=condition=Ready", "gitrepository/"+name, "-n", namespace, "--timeout=60s")
}

func lastSynced(t *testing.T, namespace, name string) string {
	return kubectl(t, "get", "gitrepository", name, "-n", namespace, "-o", "jsonpath={.status.lastSyncedCommit}")
}

func TestEveryProvidersPushSyncsThePushedCommit(t *testing.T) {
	for _, provider := range []string{"github", "gitlab", "gitea", "bitbucket", "bitbucket-server", "generic"} {
		t.Run(provider, func(t *testing.T) {
			name := "hook-" + provider
			repo := "acme/" + name // Bitbucket Cloud names repositories workspace/slug
			pushRepository(t, repo, map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
			hookedRepository(t, "default", name, repo, "")
			commit := pushRepository(t, repo, map[string]gitserver.File{"deploy/cm.yaml": {Content: strings.Replace(configMapV1, `"1"`, `"2"`, 1)}})
			body, h := pushPayload(provider, repo, "refs/heads/main", commit, cluster.WebhookSecret)
			sent := time.Now()
			status, answer := sendHook(t, provider, body, h)
			if status != http.StatusOK || len(answer.Triggered) != 1 || answer.Triggered[0].Name != name {
				t.Fatalf("%d %+v", status, answer)
			}
			took := eventually(t, 10*time.Second, func() string {
				if got := lastSynced(t, "default", name); got != commit {
					return "the pushed commit was not synced: " + got
				}
				return ""
			})
			t.Logf("webhook → synced in %s", took.Round(time.Millisecond))
			if v := settingsVersion(t, name); v != "2" {
				t.Errorf("the ConfigMap has %q", v)
			}
			if p := getRepository(t, name).Status.LastPush; p == nil || p.Provider != provider || p.Commit != commit ||
				p.ReceivedAt.Time.Before(sent.Truncate(time.Second)) {
				t.Errorf("status.lastPush: %+v", p)
			}
		})
	}
}

func TestWebhookRefusesWhatItCannotTrust(t *testing.T) {
	const name = "hook-refusals"
	first := pushRepository(t, name, map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	hookedRepository(t, "default", name, name, "")
	commit := pushRepository(t, name, map[string]gitserver.File{"deploy/cm.yaml": {Content: strings.Replace(configMapV1, `"1"`, `"2"`, 1)}})

	body, h := pushPayload("github", name, "refs/heads/main", commit, "not-the-secret")
	if status, answer := sendHook(t, "github", body, h); status != http.StatusUnauthorized || len(answer.Triggered) != 0 {
		t.Errorf("wrong secret: %d %+v", status, answer)
	}
	body, h = pushPayload("gitlab", name, "refs/heads/main", commit, "not-the-secret")
	if status, _ := sendHook(t, "gitlab", body, h); status != http.StatusUnauthorized {
		t.Errorf("wrong GitLab token: %d", status)
	}

	body, h = pushPayload("github", name, "refs/heads/feature", commit, cluster.WebhookSecret)
	status, answer := sendHook(t, "github", body, h)
	if status != http.StatusAccepted || len(answer.Triggered) != 0 || len(answer.Skipped) != 1 ||
		!strings.Contains(answer.Skipped[0].Reason, "follows branch main") {
		t.Errorf("a push to another branch: %d %+v", status, answer)
	}

	big := append([]byte(`{"ref":"refs/heads/main","pad":"`), bytes.Repeat([]byte("x"), 2<<20)...)
	big = append(big, `"}`...)
	h = http.Header{"Content-Type": {"application/json"}, "X-Github-Event": {"push"},
		"X-Hub-Signature-256": {"sha256=" + hmacHex(cluster.WebhookSecret, big)}}
	if status, _ := sendHook(t, "github", big, h); status != http.StatusRequestEntityTooLarge {
		t.Errorf("a 2 MiB body: %d, want 413", status)
	}
	body, h = pushPayload("github", name, "refs/heads/main", commit, cluster.WebhookSecret)
	h.Set("Content-Type", "application/x-www-form-urlencoded")
	if status, answer := sendHook(t, "github", body, h); status != http.StatusUnsupportedMediaType {
		t.Errorf("a form-encoded body: %d %+v, want 415", status, answer)
	}
	malformed := []byte(`{"ref": "refs/heads/main", "after": `)
	h = http.Header{"Content-Type": {"application/json"}, "X-Github-Event": {"push"},
		"X-Hub-Signature-256": {"sha256=" + hmacHex(cluster.WebhookSecret, malformed)}}
	if status, _ := sendHook(t, "github", malformed, h); status != http.StatusBadRequest {
		t.Errorf("malformed JSON: %d, want 400", status)
	}
	resp, err := http.Get(cluster.WebhookURL + "/hooks/github")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", resp.StatusCode)
	}

	time.Sleep(2 * time.Second)
	if got := lastSynced(t, "default", name); got != first {
		t.Errorf("a refused delivery synced %s", got)
	}
}

func TestAnSSHURLInAPushMatchesAnHTTPSGitRepository(t *testing.T) {
	const name = "hook-ssh"
	pushRepository(t, name, map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	hookedRepository(t, "default", name, name, "")
	commit := pushRepository(t, name, map[string]gitserver.File{"deploy/cm.yaml": {Content: strings.Replace(configMapV1, `"1"`, `"2"`, 1)}})
	host, _, _ := strings.Cut(strings.TrimPrefix(cluster.Git.BaseURL(), "http://"), ":")
	// Only ssh forms, and the host in capitals.
	body := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":%q,"repository":{"ssh_url":"git@%s:%s.git","git_url":"ssh://git@%s:2222/%s"}}`,
		commit, strings.ToUpper(host), name, host, name))
	h := http.Header{"Content-Type": {"application/json"}, "X-Github-Event": {"push"},
		"X-Hub-Signature-256": {"sha256=" + hmacHex(cluster.WebhookSecret, body)}}
	if status, answer := sendHook(t, "github", body, h); status != http.StatusOK || len(answer.Triggered) != 1 {
		t.Fatalf("%d %+v", status, answer)
	}
	eventually(t, 10*time.Second, func() string {
		if lastSynced(t, "default", name) != commit {
			return "not synced"
		}
		return ""
	})
}

// TestATenantsWebhookSecretTriggersOnlyItsOwnGitRepositories: two teams
// follow one repository; the one whose Secret signed the push is synced,
// the other is neither synced nor named in the answer.
func TestATenantsWebhookSecretTriggersOnlyItsOwnGitRepositories(t *testing.T) {
	const repo = "hook-shared"
	first := pushRepository(t, repo, map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	createNamespace(t, "hook-team-a")
	secretValues = append(secretValues, "team-a-secret")
	kubectlInput(t, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: hook\n  namespace: hook-team-a\nstringData:\n  token: team-a-secret\n", "apply", "-f", "-")
	hookedRepository(t, "hook-team-a", "hook-team-a", repo, "  webhook:\n    secretRef:\n      name: hook\n")
	hookedRepository(t, "default", "hook-team-b", repo, "")
	commit := pushRepository(t, repo, map[string]gitserver.File{"deploy/cm.yaml": {Content: strings.Replace(configMapV1, `"1"`, `"2"`, 1)}})

	body, h := pushPayload("github", repo, "refs/heads/main", commit, "team-a-secret")
	status, answer := sendHook(t, "github", body, h)
	if status != http.StatusOK || len(answer.Triggered) != 1 || answer.Triggered[0].Namespace != "hook-team-a" || len(answer.Skipped) != 0 {
		t.Fatalf("team A's secret: %d %s", status, answer.names())
	}
	if strings.Contains(fmt.Sprintf("%+v", answer), "hook-team-b") {
		t.Errorf("the answer to team A names team B's GitRepository: %+v", answer)
	}
	eventually(t, 10*time.Second, func() string {
		if lastSynced(t, "hook-team-a", "hook-team-a") != commit {
			return "team A's GitRepository did not sync"
		}
		return ""
	})
	time.Sleep(time.Second)
	if got := lastSynced(t, "default", "hook-team-b"); got != first {
		t.Errorf("team A's secret synced team B's GitRepository: %s", got)
	}
}

// TestABurstOfPushesCoalesces: ten signed deliveries within a second cost a
// GitRepository at most two syncs (each one ref listing, and a fetch when the
// commit is new), and the newest commit is applied.
func TestABurstOfPushesCoalesces(t *testing.T) {
	const name = "hook-burst"
	pushRepository(t, name, map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	hookedRepository(t, "default", name, name, "")
	var commits []string
	for i := range 10 {
		commits = append(commits, pushRepository(t, name, map[string]gitserver.File{
			"deploy/cm.yaml": {Content: strings.Replace(configMapV1, `"1"`, fmt.Sprintf(`"burst-%d"`, i), 1)}}))
	}
	before := cluster.Git.Requests(name + ".git")
	start := time.Now()
	for _, commit := range commits {
		body, h := pushPayload("github", name, "refs/heads/main", commit, cluster.WebhookSecret)
		if status, answer := sendHook(t, "github", body, h); status != http.StatusOK {
			t.Fatalf("%d %+v", status, answer)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if sent := time.Since(start); sent > time.Second {
		t.Logf("sending took %s, more than the second the test is about", sent)
	}
	newest := commits[len(commits)-1]
	eventually(t, 10*time.Second, func() string {
		if lastSynced(t, "default", name) != newest {
			return "the newest commit was not applied"
		}
		return ""
	})
	time.Sleep(1500 * time.Millisecond) // any sync still due would run by now
	after := cluster.Git.Requests(name + ".git")
	// A sync lists the refs once, and a fetch opens with a listing of its own.
	if fetches, listings := after.Fetches-before.Fetches, after.RefListings-before.RefListings; fetches > 2 || listings > 4 {
		t.Errorf("ten pushes within a second cost %d fetches and %d ref listings, want at most 2 syncs", fetches, listings)
	}
	if v := settingsVersion(t, name); v != "burst-9" {
		t.Errorf("the ConfigMap holds %q, want the newest commit's", v)
	}
	t.Logf("fetches %d, ref listings %d", after.Fetches-before.Fetches, after.RefListings-before.RefListings)
}

// TestWebhookAndDriftAreCounted: the receiver's requests, by provider and
// result, and drift corrections show on alumiini's /metrics.
func TestWebhookAndDriftAreCounted(t *testing.T) {
	body, h := pushPayload("github", "hook-metrics-nothing-follows-this", "refs/heads/main", strings.Repeat("a", 40), "wrong")
	if status, _ := sendHook(t, "github", body, h); status != http.StatusUnauthorized {
		t.Fatalf("an unsigned push: %d", status)
	}
	readyRepository(t, "drift-metrics", "")
	kubectl(t, "delete", "configmap", "settings", "-n", "drift-metrics")
	eventually(t, 15*time.Second, func() string {
		if settingsVersion(t, "drift-metrics") != "1" {
			return "not recreated"
		}
		return ""
	})
	metrics, err := cluster.Metrics(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`alumiini_webhook_requests_total{provider="github",result="unauthorized"}`, "alumiini_drift_corrected_total "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
