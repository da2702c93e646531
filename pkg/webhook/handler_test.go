package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
)

const (
	repoURL       = "https://github.com/org/app.git"
	platformToken = "platform-token"
	commitA       = "0123456789abcdef0123456789abcdef01234567"
	commitB       = "89abcdef0123456789abcdef0123456789abcdef"
)

var platformSecret = types.NamespacedName{Namespace: "alumiini-system", Name: "webhook"}

// cluster is an in-memory stand-in for the informer index, the Secrets and
// the workers the controller hands the receiver.
type cluster struct {
	mu        sync.Mutex
	now       time.Time
	repos     []*v1alpha1.GitRepository
	secrets   map[types.NamespacedName]map[string][]byte
	secretErr error
	reads     map[types.NamespacedName]int
	triggers  []triggerCall
	panicky   bool
}

type triggerCall struct {
	repo string
	push v1alpha1.PushRecord
}

func newCluster(repos ...*v1alpha1.GitRepository) *cluster {
	return &cluster{
		now:     time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC),
		repos:   repos,
		secrets: map[types.NamespacedName]map[string][]byte{platformSecret: {"github": []byte(platformToken)}},
		reads:   make(map[types.NamespacedName]int),
	}
}

func (c *cluster) options() Options {
	return Options{
		Repositories: func(key string) []*v1alpha1.GitRepository {
			var out []*v1alpha1.GitRepository
			for _, r := range c.repos {
				if MatchKey(r.Spec.URL) == key {
					out = append(out, r)
				}
			}
			return out
		},
		Secret: func(_ context.Context, namespace, name string) (map[string][]byte, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			key := types.NamespacedName{Namespace: namespace, Name: name}
			c.reads[key]++
			if c.secretErr != nil {
				return nil, c.secretErr
			}
			data, ok := c.secrets[key]
			if !ok {
				return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
			}
			return data, nil
		},
		Trigger: func(repo *v1alpha1.GitRepository, push v1alpha1.PushRecord) {
			c.mu.Lock()
			panicky := c.panicky
			if !panicky {
				c.triggers = append(c.triggers, triggerCall{repo: repo.Namespace + "/" + repo.Name, push: push})
			}
			c.mu.Unlock()
			if panicky {
				panic("trigger exploded with secret-looking detail")
			}
		},
		PlatformSecret: platformSecret,
		Now:            c.clock,
	}
}

func (c *cluster) clock() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *cluster) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *cluster) setPanicky(panicky bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.panicky = panicky
}

func (c *cluster) triggered() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var names []string
	for _, t := range c.triggers {
		names = append(names, t.repo)
	}
	return names
}

func (c *cluster) readsOf(namespace, name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads[types.NamespacedName{Namespace: namespace, Name: name}]
}

func (c *cluster) addSecret(namespace, name, token string) {
	c.secrets[types.NamespacedName{Namespace: namespace, Name: name}] = map[string][]byte{"token": []byte(token)}
}

func gitRepo(namespace, name string, edit ...func(*v1alpha1.GitRepositorySpec)) *v1alpha1.GitRepository {
	r := &v1alpha1.GitRepository{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec:       v1alpha1.GitRepositorySpec{URL: repoURL},
	}
	for _, e := range edit {
		e(&r.Spec)
	}
	return r
}

func withSecret(name string) func(*v1alpha1.GitRepositorySpec) {
	return func(s *v1alpha1.GitRepositorySpec) {
		s.Webhook = &v1alpha1.WebhookSpec{SecretRef: v1alpha1.LocalObjectReference{Name: name}}
	}
}

// githubPayload is a push event as GitHub shapes it, trimmed to what matters.
func githubPayload(ref, after string, deleted bool, repository map[string]string) []byte {
	if repository == nil {
		repository = map[string]string{
			"clone_url": repoURL,
			"ssh_url":   "git@github.com:org/app.git",
			"html_url":  "https://github.com/org/app",
		}
	}
	body, err := json.Marshal(map[string]any{
		"ref": ref, "before": commitB, "after": after, "deleted": deleted,
		"repository": repository,
	})
	if err != nil {
		panic(err)
	}
	return body
}

func pushTo(ref string) []byte { return githubPayload(ref, commitA, false, nil) }

// githubRequest signs body with secret ("" for no signature) as GitHub does.
func githubRequest(event string, body []byte, secret string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "/hooks/github", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", event)
	req.Header.Set("X-GitHub-Delivery", "delivery-1")
	if secret != "" {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	return req
}

// answer is the union of the receiver's answer bodies.
type answer struct {
	Provider  string          `json:"provider"`
	Delivery  string          `json:"delivery"`
	Triggered []triggeredRepo `json:"triggered"`
	Skipped   []skippedRepo   `json:"skipped"`
	Message   string          `json:"message"`
	Error     string          `json:"error"`
}

func serve(t *testing.T, h http.Handler, req *http.Request) (*httptest.ResponseRecorder, answer) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var a answer
	if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %s", rec.Code, err, rec.Body)
	}
	return rec, a
}

func TestPlatformSecretTriggers(t *testing.T) {
	c := newCluster(gitRepo("team-a", "app"))
	h := NewHandler(c.options())
	before := testutil.ToFloat64(requestsTotal.WithLabelValues("github", resultTriggered))

	rec, a := serve(t, h, githubRequest("push", pushTo("refs/heads/main"), platformToken))

	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", rec.Code, rec.Body)
	}
	want := []triggeredRepo{{Namespace: "team-a", Name: "app", Ref: "refs/heads/main", Commit: commitA}}
	if !reflect.DeepEqual(a.Triggered, want) || a.Provider != "github" || a.Delivery != "delivery-1" {
		t.Errorf("answer %+v, want triggered %+v from github delivery-1", a, want)
	}
	wantCall := triggerCall{repo: "team-a/app", push: v1alpha1.PushRecord{
		Provider: "github", DeliveryID: "delivery-1", Ref: "refs/heads/main", Commit: commitA,
		ReceivedAt: metav1.NewTime(c.clock()),
	}}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.triggers) != 1 || !reflect.DeepEqual(c.triggers[0], wantCall) {
		t.Errorf("Trigger calls %+v, want %+v", c.triggers, wantCall)
	}
	if got := testutil.ToFloat64(requestsTotal.WithLabelValues("github", resultTriggered)) - before; got != 1 {
		t.Errorf("requests_total{github,triggered} grew by %v, want 1", got)
	}
}

func TestWrongSecretIsRefused(t *testing.T) {
	c := newCluster(gitRepo("team-a", "app", withSecret("hook")))
	c.addSecret("team-a", "hook", "right")
	h := NewHandler(c.options())

	for name, secret := range map[string]string{"wrong secret": "wrong", "unsigned": ""} {
		t.Run(name, func(t *testing.T) {
			rec, a := serve(t, h, githubRequest("push", pushTo("refs/heads/main"), secret))
			if rec.Code != http.StatusUnauthorized || a.Error != msgUnauthorized {
				t.Errorf("status %d error %q, want 401 %q", rec.Code, a.Error, msgUnauthorized)
			}
			if !strings.Contains(a.Message, "github.com/org/app") {
				t.Errorf("message %q does not say which URL was looked up", a.Message)
			}
		})
	}
	if got := c.triggered(); len(got) != 0 {
		t.Errorf("triggered %v on a refused push", got)
	}
}

func TestRepoSecretAuthorizesOnlyTheReposNamingIt(t *testing.T) {
	c := newCluster(
		gitRepo("team-a", "app", withSecret("hook")),
		gitRepo("team-a", "app-canary", withSecret("hook")),
		gitRepo("team-a", "app-other-secret", withSecret("other")),
		gitRepo("payments", "ledger", withSecret("hook")),
		gitRepo("tenant-b", "unsigned"),
	)
	c.addSecret("team-a", "hook", "team-a-token")
	c.addSecret("team-a", "other", "team-a-other-token")
	c.addSecret("payments", "hook", "payments-token")
	h := NewHandler(c.options())

	rec, a := serve(t, h, githubRequest("push", pushTo("refs/heads/main"), "team-a-token"))

	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", rec.Code, rec.Body)
	}
	want := []string{"team-a/app", "team-a/app-canary"}
	if got := c.triggered(); !reflect.DeepEqual(got, want) {
		t.Errorf("triggered %v, want %v", got, want)
	}
	if len(a.Skipped) != 0 {
		t.Errorf("skipped %+v, want none: unauthorized repositories are not listed", a.Skipped)
	}
	for _, hidden := range []string{"payments", "ledger", "tenant-b", "app-other-secret"} {
		if strings.Contains(rec.Body.String(), hidden) {
			t.Errorf("answer mentions %q, which the sender is not authorized for: %s", hidden, rec.Body)
		}
	}
}

func TestRefsDecideWhatIsTriggered(t *testing.T) {
	repos := []*v1alpha1.GitRepository{
		gitRepo("ns", "commit-pinned", func(s *v1alpha1.GitRepositorySpec) { s.Commit = commitB }),
		gitRepo("ns", "follows-dev", func(s *v1alpha1.GitRepositorySpec) { s.Branch = "dev" }),
		gitRepo("ns", "follows-main"),
		gitRepo("ns", "suspended", func(s *v1alpha1.GitRepositorySpec) { s.Suspend = true }),
		gitRepo("ns", "tag-pinned", func(s *v1alpha1.GitRepositorySpec) { s.Tag = "v1.2.0" }),
	}
	common := []skippedRepo{
		{Namespace: "ns", Name: "commit-pinned", Reason: "pinned to commit 89abcdef0123"},
	}
	suspended := skippedRepo{Namespace: "ns", Name: "suspended", Reason: "suspended"}
	skip := func(name, reason string) skippedRepo { return skippedRepo{Namespace: "ns", Name: name, Reason: reason} }
	tests := []struct {
		name          string
		body          []byte
		wantStatus    int
		wantTriggered []string
		wantSkipped   []skippedRepo
	}{{
		name:          "push to main",
		body:          pushTo("refs/heads/main"),
		wantStatus:    http.StatusOK,
		wantTriggered: []string{"ns/follows-main"},
		wantSkipped: append(common,
			skip("follows-dev", "follows branch dev, push was to refs/heads/main"),
			suspended,
			skip("tag-pinned", "follows tag v1.2.0, push was to refs/heads/main")),
	}, {
		name:       "push to another branch",
		body:       pushTo("refs/heads/feature"),
		wantStatus: http.StatusAccepted,
		wantSkipped: append(common,
			skip("follows-dev", "follows branch dev, push was to refs/heads/feature"),
			skip("follows-main", "follows branch main, push was to refs/heads/feature"),
			suspended,
			skip("tag-pinned", "follows tag v1.2.0, push was to refs/heads/feature")),
	}, {
		name:          "tag push",
		body:          pushTo("refs/tags/v1.2.0"),
		wantStatus:    http.StatusOK,
		wantTriggered: []string{"ns/tag-pinned"},
		wantSkipped: append(common,
			skip("follows-dev", "follows branch dev, push was to refs/tags/v1.2.0"),
			skip("follows-main", "follows branch main, push was to refs/tags/v1.2.0"),
			suspended),
	}, {
		name:       "branch deleted",
		body:       githubPayload("refs/heads/main", "0000000000000000000000000000000000000000", true, nil),
		wantStatus: http.StatusAccepted,
		wantSkipped: append(common,
			skip("follows-dev", "follows branch dev, push was to refs/heads/main"),
			skip("follows-main", "ref deleted"),
			suspended,
			skip("tag-pinned", "follows tag v1.2.0, push was to refs/heads/main")),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(repos...)
			rec, a := serve(t, NewHandler(c.options()), githubRequest("push", tt.body, platformToken))
			if rec.Code != tt.wantStatus {
				t.Errorf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if got := c.triggered(); !reflect.DeepEqual(got, tt.wantTriggered) {
				t.Errorf("triggered %v, want %v", got, tt.wantTriggered)
			}
			if !reflect.DeepEqual(a.Skipped, tt.wantSkipped) {
				t.Errorf("skipped\n%+v\nwant\n%+v", a.Skipped, tt.wantSkipped)
			}
			if tt.wantTriggered == nil && a.Message != msgAllSkipped {
				t.Errorf("message %q, want %q", a.Message, msgAllSkipped)
			}
		})
	}
}

func TestNoMatchingRepository(t *testing.T) {
	c := newCluster(gitRepo("ns", "elsewhere", func(s *v1alpha1.GitRepositorySpec) { s.URL = "https://github.com/org/other" }))
	rec, a := serve(t, NewHandler(c.options()), githubRequest("push", pushTo("refs/heads/main"), platformToken))
	if rec.Code != http.StatusAccepted || !strings.Contains(a.Message, "matched no GitRepository") ||
		!strings.Contains(a.Message, "github.com/org/app") || !strings.Contains(a.Message, "refs/heads/main") {
		t.Errorf("status %d message %q, want 202 naming the URL and ref looked up", rec.Code, a.Message)
	}
}

func TestSSHURLInPayloadMatchesHTTPSRepository(t *testing.T) {
	c := newCluster(gitRepo("ns", "app"))
	body := githubPayload("refs/heads/main", commitA, false, map[string]string{"ssh_url": "git@github.com:Org/App.git"})
	rec, _ := serve(t, NewHandler(c.options()), githubRequest("push", body, platformToken))
	if rec.Code != http.StatusOK || !reflect.DeepEqual(c.triggered(), []string{"ns/app"}) {
		t.Errorf("status %d triggered %v, want 200 and ns/app: %s", rec.Code, c.triggered(), rec.Body)
	}
}

func TestRequestsRefusedBeforeParsing(t *testing.T) {
	postTo := func(path, contentType string, body io.Reader) *http.Request {
		req := httptest.NewRequest(http.MethodPost, path, body)
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("X-GitHub-Event", "push")
		return req
	}
	post := func(contentType string, body io.Reader) *http.Request {
		return postTo("/hooks/github", contentType, body)
	}
	huge := bytes.Repeat([]byte("x"), 2<<20)
	tests := []struct {
		name       string
		req        func() *http.Request
		wantStatus int
		wantInErr  string
		wantHeader [2]string
	}{{
		name:       "GET",
		req:        func() *http.Request { return httptest.NewRequest(http.MethodGet, "/hooks/github", nil) },
		wantStatus: http.StatusMethodNotAllowed,
		wantHeader: [2]string{"Allow", "POST"},
	}, {
		name:       "unknown provider",
		req:        func() *http.Request { return postTo("/hooks/svn", "application/json", strings.NewReader("{}")) },
		wantStatus: http.StatusNotFound,
		wantInErr:  "bitbucket-server",
	}, {
		name:       "text/plain",
		req:        func() *http.Request { return post("text/plain", strings.NewReader("{}")) },
		wantStatus: http.StatusUnsupportedMediaType,
		wantInErr:  "configure the webhook to send Content-Type application/json",
	}, {
		name: "form-encoded (GitHub's default)",
		req: func() *http.Request {
			return post("application/x-www-form-urlencoded", strings.NewReader("payload=%7B%7D"))
		},
		wantStatus: http.StatusUnsupportedMediaType,
	}, {
		name:       "2 MiB body with a length",
		req:        func() *http.Request { return post("application/json; charset=utf-8", bytes.NewReader(huge)) },
		wantStatus: http.StatusRequestEntityTooLarge,
		wantInErr:  "1048576 bytes",
	}, {
		name: "2 MiB body chunked",
		req: func() *http.Request {
			req := post("application/json", bytes.NewReader(huge))
			req.ContentLength = -1
			return req
		},
		wantStatus: http.StatusRequestEntityTooLarge,
		wantInErr:  "1048576 bytes",
	}, {
		name:       "malformed JSON",
		req:        func() *http.Request { return githubRequest("push", []byte("{not json"), platformToken) },
		wantStatus: http.StatusBadRequest,
		wantInErr:  "not JSON",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(gitRepo("ns", "app"))
			rec, a := serve(t, NewHandler(c.options()), tt.req())
			if rec.Code != tt.wantStatus || !strings.Contains(a.Error, tt.wantInErr) {
				t.Errorf("status %d error %q, want %d containing %q", rec.Code, a.Error, tt.wantStatus, tt.wantInErr)
			}
			if k := tt.wantHeader[0]; k != "" && rec.Header().Get(k) != tt.wantHeader[1] {
				t.Errorf("%s: %q, want %q", k, rec.Header().Get(k), tt.wantHeader[1])
			}
			if len(c.triggered()) != 0 {
				t.Errorf("triggered %v", c.triggered())
			}
		})
	}
}

func TestPingAndIgnoredEvents(t *testing.T) {
	pingBody := []byte(`{"zen":"Keep it logically awesome.","hook_id":1}`)
	tests := []struct {
		name, event, secret string
		body                []byte
		wantStatus          int
		wantMessage         string
	}{
		{"verified ping", "ping", platformToken, pingBody, http.StatusOK, "pong"},
		{"unverified ping", "ping", "wrong", pingBody, http.StatusUnauthorized, ""},
		{"verified issue event", "issues", platformToken, []byte(`{}`), http.StatusAccepted, `ignored event "issues"`},
		{"unverified issue event", "issues", "", []byte(`{}`), http.StatusUnauthorized, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(gitRepo("ns", "app"))
			rec, a := serve(t, NewHandler(c.options()), githubRequest(tt.event, tt.body, tt.secret))
			if rec.Code != tt.wantStatus || !strings.Contains(a.Message, tt.wantMessage) {
				t.Errorf("status %d message %q, want %d with %q: %s", rec.Code, a.Message, tt.wantStatus, tt.wantMessage, rec.Body)
			}
			if len(c.triggered()) != 0 {
				t.Errorf("triggered %v", c.triggered())
			}
		})
	}

	t.Run("ping without a URL and a per-repository secret", func(t *testing.T) {
		c := newCluster(gitRepo("ns", "app", withSecret("hook")))
		c.addSecret("ns", "hook", "repo-token")
		rec, a := serve(t, NewHandler(c.options()), githubRequest("ping", pingBody, "repo-token"))
		if rec.Code != http.StatusUnauthorized || !strings.Contains(a.Message, "names no repository URL") {
			t.Errorf("status %d message %q, want 401 saying why no repository secret applies", rec.Code, a.Message)
		}
	})
}

func TestRateLimitPerSource(t *testing.T) {
	c := newCluster(gitRepo("ns", "app"))
	opts := c.options()
	opts.RatePerSecond, opts.Burst = 1, 3
	h := NewHandler(opts)
	ping := func(remote string) *httptest.ResponseRecorder {
		req := githubRequest("ping", []byte(`{}`), platformToken)
		req.RemoteAddr = remote
		req.Header.Set("X-Forwarded-For", "203.0.113.77")
		rec, _ := serve(t, h, req)
		return rec
	}
	for i := range 3 {
		if rec := ping("192.0.2.1:1000"); rec.Code != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", i, rec.Code)
		}
	}
	rec := ping("192.0.2.1:1001")
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("past the burst: status %d Retry-After %q, want 429 and 1", rec.Code, rec.Header().Get("Retry-After"))
	}
	if rec := ping("192.0.2.2:1000"); rec.Code != http.StatusOK {
		t.Errorf("another source: status %d, want 200", rec.Code)
	}
	c.advance(time.Second)
	if rec := ping("192.0.2.1:1000"); rec.Code != http.StatusOK {
		t.Errorf("a second later: status %d, want 200", rec.Code)
	}
}

func TestSourceLimiterIsBounded(t *testing.T) {
	now := time.Unix(0, 0)
	l := newSourceLimiter(10, 20, func() time.Time { return now })
	req := func(i int) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:1", i>>16&0xff, i>>8&0xff, i&0xff)
		return r
	}
	for i := range maxSources {
		if ok, _ := l.allow(req(i)); !ok {
			t.Fatalf("source %d refused while the map had room", i)
		}
	}
	if ok, _ := l.allow(req(maxSources)); ok {
		t.Errorf("a new source was let in while every entry was recent")
	}
	if ok, _ := l.allow(req(0)); !ok {
		t.Errorf("a known source was refused when the map was full")
	}
	now = now.Add(2 * time.Minute)
	if ok, _ := l.allow(req(maxSources)); !ok {
		t.Errorf("a new source was refused after the others went idle")
	}
	if len(l.sources) > maxSources {
		t.Errorf("%d sources kept, at most %d", len(l.sources), maxSources)
	}
	if a, b := sourceKey("[2001:db8::1]:443"), sourceKey("[2001:db8::ffff]:443"); a != b {
		t.Errorf("IPv6 addresses of one /64 got different keys %q and %q", a, b)
	}
}

func TestPanickingTriggerAnswers500AndServingGoesOn(t *testing.T) {
	c := newCluster(gitRepo("ns", "app"))
	srv := httptest.NewServer(NewHandler(c.options()))
	defer srv.Close()
	post := func() (int, string) {
		req := githubRequest("push", pushTo("refs/heads/main"), platformToken)
		req.RequestURI, req.URL.Scheme, req.URL.Host = "", "http", strings.TrimPrefix(srv.URL, "http://")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("posting: %v", err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	c.setPanicky(true)
	status, body := post()
	if status != http.StatusInternalServerError || strings.Contains(body, "exploded") || strings.Contains(body, "goroutine") {
		t.Errorf("status %d body %q, want 500 without the panic or a stack", status, body)
	}
	c.setPanicky(false)
	if status, body := post(); status != http.StatusOK {
		t.Errorf("after a panic: status %d, want 200: %s", status, body)
	}
}

func TestSecretReadOncePerRequestAndCached(t *testing.T) {
	var repos []*v1alpha1.GitRepository
	for i := range 20 {
		repos = append(repos, gitRepo("team", fmt.Sprintf("app-%02d", i), withSecret("hook")))
	}
	c := newCluster(repos...)
	c.addSecret("team", "hook", "team-token")
	h := NewHandler(c.options())

	rec, _ := serve(t, h, githubRequest("push", pushTo("refs/heads/main"), "wrong"))
	if rec.Code != http.StatusUnauthorized || c.readsOf("team", "hook") != 1 {
		t.Errorf("wrong secret: status %d with %d reads, want 401 with 1", rec.Code, c.readsOf("team", "hook"))
	}
	rec, a := serve(t, h, githubRequest("push", pushTo("refs/heads/main"), "team-token"))
	if rec.Code != http.StatusOK || len(a.Triggered) != 20 || c.readsOf("team", "hook") != 1 {
		t.Errorf("right secret: status %d, %d triggered, %d reads; want 200, 20, 1 (cached)", rec.Code, len(a.Triggered), c.readsOf("team", "hook"))
	}
	c.advance(11 * time.Second)
	serve(t, h, githubRequest("push", pushTo("refs/heads/main"), "team-token"))
	if got := c.readsOf("team", "hook"); got != 2 {
		t.Errorf("after the TTL: %d reads, want 2", got)
	}
}

func TestSecretNotFoundIsCachedOtherErrorsAreNot(t *testing.T) {
	c := newCluster(gitRepo("team", "app", withSecret("missing")))
	opts := c.options()
	opts.PlatformSecret = types.NamespacedName{}
	h := NewHandler(opts)

	for range 3 {
		if rec, _ := serve(t, h, githubRequest("push", pushTo("refs/heads/main"), "anything")); rec.Code != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", rec.Code)
		}
	}
	if got := c.readsOf("team", "missing"); got != 1 {
		t.Errorf("missing Secret read %d times, want 1", got)
	}

	c.mu.Lock()
	c.secretErr = errors.New("etcd is having a bad day")
	c.mu.Unlock()
	c.advance(time.Minute)
	for range 2 {
		rec, a := serve(t, h, githubRequest("push", pushTo("refs/heads/main"), "anything"))
		if rec.Code != http.StatusServiceUnavailable || strings.Contains(a.Error, "etcd") {
			t.Errorf("status %d error %q, want 503 without the cause", rec.Code, a.Error)
		}
	}
	if got := c.readsOf("team", "missing"); got != 3 {
		t.Errorf("Secret read %d times, want 3: errors are not cached", got)
	}
}

func TestDistinctSecretsPerRequestAreCapped(t *testing.T) {
	c := newCluster()
	for i := range maxSecretsPerRequest + 6 {
		ns := fmt.Sprintf("team-%03d", i)
		c.repos = append(c.repos, gitRepo(ns, "app", withSecret("hook")))
		c.addSecret(ns, "hook", "token-"+ns)
	}
	opts := c.options()
	opts.PlatformSecret = types.NamespacedName{}
	h := NewHandler(opts)

	last := fmt.Sprintf("team-%03d", maxSecretsPerRequest+5)
	rec, a := serve(t, h, githubRequest("push", pushTo("refs/heads/main"), "token-"+last))
	if rec.Code != http.StatusUnauthorized || !strings.Contains(a.Message, msgCapped) {
		t.Errorf("status %d message %q, want 401 saying the Secrets were capped", rec.Code, a.Message)
	}
	reads := 0
	c.mu.Lock()
	for key, n := range c.reads {
		if key != platformSecret {
			reads += n
		}
	}
	c.mu.Unlock()
	if reads != maxSecretsPerRequest {
		t.Errorf("%d Secrets read, want %d", reads, maxSecretsPerRequest)
	}
	first := "team-000"
	if rec, _ := serve(t, h, githubRequest("push", pushTo("refs/heads/main"), "token-"+first)); rec.Code != http.StatusOK {
		t.Errorf("a Secret within the cap: status %d, want 200", rec.Code)
	}
}

func TestRegisterMetricsIsIdempotent(t *testing.T) {
	r := prometheus.NewRegistry()
	for range 2 {
		if err := RegisterMetrics(r); err != nil {
			t.Fatalf("RegisterMetrics: %v", err)
		}
	}
}
