package validation

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
)

func validRepo() *alumiini.GitRepository {
	return &alumiini.GitRepository{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default"},
		Spec: alumiini.GitRepositorySpec{
			URL:      "https://git.example.com/org/repo.git",
			Branch:   "main",
			Interval: "5m",
			Timeout:  "1m",
			Prune:    ptr.To(true),
		},
	}
}

func TestValidateGitRepository(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(*alumiini.GitRepository)
		field   string          // empty: valid
		errType field.ErrorType // checked when field is set
	}{
		{name: "valid https", mutate: func(r *alumiini.GitRepository) {}},
		{name: "valid http", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "http://127.0.0.1:8080/repo.git" }},
		{name: "valid ssh", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "ssh://git@git.example.com:2222/org/repo.git" }},
		{name: "valid scp-like", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "git@github.com:org/repo.git" }},
		{name: "url required", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "" }, field: "spec.url", errType: field.ErrorTypeRequired},
		{name: "url git scheme", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "git://example.com/repo" }, field: "spec.url", errType: field.ErrorTypeNotSupported},
		{name: "url file scheme", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "file:///etc/repo" }, field: "spec.url", errType: field.ErrorTypeNotSupported},
		{name: "url without scheme", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "example.com/repo" }, field: "spec.url", errType: field.ErrorTypeInvalid},
		{name: "url with password", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "https://bob:s3cret@example.com/repo" }, field: "spec.url", errType: field.ErrorTypeInvalid},
		{name: "url with token as user", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "https://s3cret@example.com/repo" }, field: "spec.url", errType: field.ErrorTypeInvalid},
		{name: "ssh url with password", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "ssh://git:s3cret@example.com/repo" }, field: "spec.url", errType: field.ErrorTypeInvalid},
		{name: "scp-like with password", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "git:s3cret@example.com:repo" }, field: "spec.url", errType: field.ErrorTypeInvalid},
		{name: "url without host", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "https:///repo" }, field: "spec.url", errType: field.ErrorTypeInvalid},
		{name: "url without path", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "https://example.com/" }, field: "spec.url", errType: field.ErrorTypeInvalid},
		{name: "url with space", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "https://example.com/a repo" }, field: "spec.url", errType: field.ErrorTypeInvalid},
		{name: "url with query", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "https://example.com/repo?x=1" }, field: "spec.url", errType: field.ErrorTypeInvalid},
		{name: "url too long", mutate: func(r *alumiini.GitRepository) { r.Spec.URL = "https://example.com/" + strings.Repeat("a", 2100) }, field: "spec.url", errType: field.ErrorTypeTooLong},

		{name: "branch with slash", mutate: func(r *alumiini.GitRepository) { r.Spec.Branch = "release/1.2" }},
		{name: "tag only", mutate: func(r *alumiini.GitRepository) { r.Spec.Branch, r.Spec.Tag = "", "v1.2.3" }},
		{name: "commit only", mutate: func(r *alumiini.GitRepository) {
			r.Spec.Branch, r.Spec.Commit = "", "0123456789abcdef0123456789abcdef01234567"
		}},
		{name: "no ref", mutate: func(r *alumiini.GitRepository) { r.Spec.Branch = "" }, field: "spec.branch", errType: field.ErrorTypeRequired},
		{name: "branch and tag", mutate: func(r *alumiini.GitRepository) { r.Spec.Tag = "v1" }, field: "spec.tag", errType: field.ErrorTypeInvalid},
		{name: "branch and commit", mutate: func(r *alumiini.GitRepository) {
			r.Spec.Commit = "0123456789abcdef0123456789abcdef01234567"
		}, field: "spec.commit", errType: field.ErrorTypeInvalid},
		{name: "commit too short", mutate: func(r *alumiini.GitRepository) { r.Spec.Branch, r.Spec.Commit = "", "abc123" }, field: "spec.commit", errType: field.ErrorTypeInvalid},
		{name: "commit upper case", mutate: func(r *alumiini.GitRepository) {
			r.Spec.Branch, r.Spec.Commit = "", "0123456789ABCDEF0123456789ABCDEF01234567"
		}, field: "spec.commit", errType: field.ErrorTypeInvalid},
		{name: "branch with dotdot", mutate: func(r *alumiini.GitRepository) { r.Spec.Branch = "a..b" }, field: "spec.branch", errType: field.ErrorTypeInvalid},
		{name: "branch with space", mutate: func(r *alumiini.GitRepository) { r.Spec.Branch = "my branch" }, field: "spec.branch", errType: field.ErrorTypeInvalid},
		{name: "branch with colon", mutate: func(r *alumiini.GitRepository) { r.Spec.Branch = "a:b" }, field: "spec.branch", errType: field.ErrorTypeInvalid},
		{name: "branch full ref", mutate: func(r *alumiini.GitRepository) { r.Spec.Branch = "refs/heads/main" }, field: "spec.branch", errType: field.ErrorTypeInvalid},
		{name: "branch leading dash", mutate: func(r *alumiini.GitRepository) { r.Spec.Branch = "-x" }, field: "spec.branch", errType: field.ErrorTypeInvalid},
		{name: "branch ends with .lock", mutate: func(r *alumiini.GitRepository) { r.Spec.Branch = "x.lock" }, field: "spec.branch", errType: field.ErrorTypeInvalid},
		{name: "branch double slash", mutate: func(r *alumiini.GitRepository) { r.Spec.Branch = "a//b" }, field: "spec.branch", errType: field.ErrorTypeInvalid},
		{name: "branch hidden component", mutate: func(r *alumiini.GitRepository) { r.Spec.Branch = "a/.b" }, field: "spec.branch", errType: field.ErrorTypeInvalid},
		{name: "tag with @{", mutate: func(r *alumiini.GitRepository) { r.Spec.Branch, r.Spec.Tag = "", "v@{1}" }, field: "spec.tag", errType: field.ErrorTypeInvalid},

		{name: "path nested", mutate: func(r *alumiini.GitRepository) { r.Spec.Path = "./clusters/prod" }},
		{name: "path absolute", mutate: func(r *alumiini.GitRepository) { r.Spec.Path = "/etc" }, field: "spec.path", errType: field.ErrorTypeInvalid},
		{name: "path dotdot", mutate: func(r *alumiini.GitRepository) { r.Spec.Path = "apps/../../x" }, field: "spec.path", errType: field.ErrorTypeInvalid},
		{name: "path only dotdot", mutate: func(r *alumiini.GitRepository) { r.Spec.Path = ".." }, field: "spec.path", errType: field.ErrorTypeInvalid},
		{name: "path dotdot-like name is fine", mutate: func(r *alumiini.GitRepository) { r.Spec.Path = "a..b/c" }},
		{name: "path NUL", mutate: func(r *alumiini.GitRepository) { r.Spec.Path = "a\x00b" }, field: "spec.path", errType: field.ErrorTypeInvalid},
		{name: "path backslash", mutate: func(r *alumiini.GitRepository) { r.Spec.Path = `apps\..\x` }, field: "spec.path", errType: field.ErrorTypeInvalid},

		{name: "interval lower bound", mutate: func(r *alumiini.GitRepository) { r.Spec.Interval = "10s" }},
		{name: "interval upper bound", mutate: func(r *alumiini.GitRepository) { r.Spec.Interval = "24h" }},
		{name: "interval too short", mutate: func(r *alumiini.GitRepository) { r.Spec.Interval = "9s" }, field: "spec.interval", errType: field.ErrorTypeInvalid},
		{name: "interval too long", mutate: func(r *alumiini.GitRepository) { r.Spec.Interval = "25h" }, field: "spec.interval", errType: field.ErrorTypeInvalid},
		{name: "interval unparsable", mutate: func(r *alumiini.GitRepository) { r.Spec.Interval = "five minutes" }, field: "spec.interval", errType: field.ErrorTypeInvalid},
		{name: "interval missing", mutate: func(r *alumiini.GitRepository) { r.Spec.Interval = "" }, field: "spec.interval", errType: field.ErrorTypeRequired},
		{name: "timeout too short", mutate: func(r *alumiini.GitRepository) { r.Spec.Timeout = "500ms" }, field: "spec.timeout", errType: field.ErrorTypeInvalid},
		{name: "timeout too long", mutate: func(r *alumiini.GitRepository) { r.Spec.Timeout = "2h" }, field: "spec.timeout", errType: field.ErrorTypeInvalid},
		{name: "timeout unparsable", mutate: func(r *alumiini.GitRepository) { r.Spec.Timeout = "1 minute" }, field: "spec.timeout", errType: field.ErrorTypeInvalid},

		{name: "target namespace", mutate: func(r *alumiini.GitRepository) { r.Spec.TargetNamespace = "apps" }},
		{name: "target namespace invalid", mutate: func(r *alumiini.GitRepository) { r.Spec.TargetNamespace = "Apps_1" }, field: "spec.targetNamespace", errType: field.ErrorTypeInvalid},
		{name: "webhook secret", mutate: func(r *alumiini.GitRepository) {
			r.Spec.Webhook = &alumiini.WebhookSpec{SecretRef: alumiini.LocalObjectReference{Name: "hook"}}
		}},
		{name: "webhook without secret name", mutate: func(r *alumiini.GitRepository) { r.Spec.Webhook = &alumiini.WebhookSpec{} }, field: "spec.webhook.secretRef.name", errType: field.ErrorTypeRequired},
		{name: "drift detect with ignore", mutate: func(r *alumiini.GitRepository) {
			r.Spec.Drift = &alumiini.DriftSpec{Mode: alumiini.DriftDetect, HealGracePeriod: "5m",
				Ignore: []alumiini.DriftIgnoreRule{{Group: "apps", Kind: "Deployment", Paths: []string{"/spec/replicas", "/metadata/annotations/x~1y"}}}}
		}},
		{name: "drift bad mode", mutate: func(r *alumiini.GitRepository) { r.Spec.Drift = &alumiini.DriftSpec{Mode: "Heal"} }, field: "spec.drift.mode", errType: field.ErrorTypeNotSupported},
		{name: "health timeout too long", mutate: func(r *alumiini.GitRepository) { r.Spec.HealthTimeout = "2h" }, field: "spec.healthTimeout", errType: field.ErrorTypeInvalid},
		{name: "health check without kind", mutate: func(r *alumiini.GitRepository) {
			r.Spec.HealthChecks = []alumiini.HealthCheckReference{{APIVersion: "apps/v1", Name: "web"}}
		}, field: "spec.healthChecks[0].kind", errType: field.ErrorTypeRequired},
		{name: "health check with a bad namespace", mutate: func(r *alumiini.GitRepository) {
			r.Spec.HealthChecks = []alumiini.HealthCheckReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", Namespace: "Not_A_Namespace"}}
		}, field: "spec.healthChecks[0].namespace", errType: field.ErrorTypeInvalid},
		{name: "too many health checks", mutate: func(r *alumiini.GitRepository) {
			r.Spec.HealthChecks = make([]alumiini.HealthCheckReference, MaxHealthChecks+1)
		}, field: "spec.healthChecks", errType: field.ErrorTypeTooMany},
		{name: "drift grace too long", mutate: func(r *alumiini.GitRepository) { r.Spec.Drift = &alumiini.DriftSpec{HealGracePeriod: "48h"} }, field: "spec.drift.healGracePeriod", errType: field.ErrorTypeInvalid},
		{name: "drift ignore without kind", mutate: func(r *alumiini.GitRepository) {
			r.Spec.Drift = &alumiini.DriftSpec{Ignore: []alumiini.DriftIgnoreRule{{Paths: []string{"/spec/replicas"}}}}
		}, field: "spec.drift.ignore[0].kind", errType: field.ErrorTypeRequired},
		{name: "drift ignore not a pointer", mutate: func(r *alumiini.GitRepository) {
			r.Spec.Drift = &alumiini.DriftSpec{Ignore: []alumiini.DriftIgnoreRule{{Kind: "Deployment", Paths: []string{"spec.replicas"}}}}
		}, field: "spec.drift.ignore[0].paths[0]", errType: field.ErrorTypeInvalid},
		{name: "drift ignore of the object's name", mutate: func(r *alumiini.GitRepository) {
			r.Spec.Drift = &alumiini.DriftSpec{Ignore: []alumiini.DriftIgnoreRule{{Kind: "Deployment", Paths: []string{"/metadata/name"}}}}
		}, field: "spec.drift.ignore[0].paths[0]", errType: field.ErrorTypeInvalid},
		{name: "drift ignore of our label", mutate: func(r *alumiini.GitRepository) {
			r.Spec.Drift = &alumiini.DriftSpec{Ignore: []alumiini.DriftIgnoreRule{{Kind: "Deployment", Paths: []string{"/metadata/labels/alumiini.false.systems~1name"}}}}
		}, field: "spec.drift.ignore[0].paths[0]", errType: field.ErrorTypeInvalid},
		{name: "secretRef", mutate: func(r *alumiini.GitRepository) { r.Spec.SecretRef = &alumiini.LocalObjectReference{Name: "git-creds"} }},
		{name: "secretRef without name", mutate: func(r *alumiini.GitRepository) { r.Spec.SecretRef = &alumiini.LocalObjectReference{} }, field: "spec.secretRef.name", errType: field.ErrorTypeRequired},
		{name: "secretRef bad name", mutate: func(r *alumiini.GitRepository) { r.Spec.SecretRef = &alumiini.LocalObjectReference{Name: "Git Creds"} }, field: "spec.secretRef.name", errType: field.ErrorTypeInvalid},
		{name: "serviceAccountName bad", mutate: func(r *alumiini.GitRepository) { r.Spec.ServiceAccountName = "sa/x" }, field: "spec.serviceAccountName", errType: field.ErrorTypeInvalid},
		{name: "prune unset", mutate: func(r *alumiini.GitRepository) { r.Spec.Prune = nil }, field: "spec.prune", errType: field.ErrorTypeRequired},
		{name: "rolloutRef", mutate: func(r *alumiini.GitRepository) {
			r.Spec.RolloutRef = &alumiini.RolloutReference{APIVersion: "argoproj.io/v1alpha1", Kind: "Rollout", Name: "web"}
		}},
		{name: "rolloutRef of another kind", mutate: func(r *alumiini.GitRepository) {
			r.Spec.RolloutRef = &alumiini.RolloutReference{APIVersion: "kulta.io/v1alpha1", Kind: "Deployment", Name: "web"}
		}, field: "spec.rolloutRef.kind", errType: field.ErrorTypeNotSupported},
		{name: "rolloutRef of an unknown project", mutate: func(r *alumiini.GitRepository) {
			r.Spec.RolloutRef = &alumiini.RolloutReference{APIVersion: "example.com/v1", Kind: "Rollout", Name: "web"}
		}, field: "spec.rolloutRef.apiVersion", errType: field.ErrorTypeNotSupported},

		{name: "name too long for a label", mutate: func(r *alumiini.GitRepository) { r.Name = strings.Repeat("a", 64) }, field: "metadata.name", errType: field.ErrorTypeInvalid},
		{name: "name with dot", mutate: func(r *alumiini.GitRepository) { r.Name = "a.b" }, field: "metadata.name", errType: field.ErrorTypeInvalid},
		{name: "namespace required", mutate: func(r *alumiini.GitRepository) { r.Namespace = "" }, field: "metadata.namespace", errType: field.ErrorTypeRequired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := validRepo()
			tc.mutate(repo)
			errs := ValidateGitRepository(repo)
			if tc.field == "" {
				if len(errs) != 0 {
					t.Fatalf("expected valid, got %v", errs)
				}
				return
			}
			if len(errs) == 0 {
				t.Fatalf("expected an error on %s, got none", tc.field)
			}
			found := false
			for _, err := range errs {
				if err.Field == tc.field && err.Type == tc.errType {
					found = true
				}
			}
			if !found {
				t.Fatalf("expected %s error on %s, got %v", tc.errType, tc.field, errs)
			}
			if strings.Contains(errs.ToAggregate().Error(), "s3cret") {
				t.Fatalf("the error leaks the credential: %v", errs)
			}
		})
	}
}

// scp-like URLs that git reads as a local path (a tenant's way to this
// machine's files) or as another host than the one validated are refused,
// saying why.
func TestSCPLikeURLsGitReadsOtherwiseAreRefused(t *testing.T) {
	cases := map[string]string{
		`git@x:\/../../var/cache/repo.git`: `the path must not start with "\"`,
		"a/b@host:repo.git":                `the user must not contain "/" or "@"`,
		"a@b@host:repo.git":                `the user must not contain "/" or "@"`,
	}
	for url, says := range cases {
		repo := validRepo()
		repo.Spec.URL = url
		errs := ValidateGitRepository(repo)
		if len(errs) != 1 || errs[0].Field != "spec.url" || errs[0].Type != field.ErrorTypeInvalid || !strings.Contains(errs[0].Detail, says) {
			t.Errorf("%s: got %v, want one Invalid error on spec.url saying %q", url, errs, says)
		}
	}
}

func TestDurationBoundsInMessages(t *testing.T) {
	repo := validRepo()
	repo.Spec.Interval, repo.Spec.Timeout = "1s", "2h"
	got := ValidateGitRepository(repo).ToAggregate().Error()
	for _, want := range []string{"must be between 10s and 24h", "must be between 1s and 1h"} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
}

func TestValidateGitRepositoryUpdate(t *testing.T) {
	old := validRepo()
	old.ResourceVersion = "1"
	repo := validRepo()
	repo.ResourceVersion = "1"
	repo.Spec.Interval = "1s"
	errs := ValidateGitRepositoryUpdate(repo, old)
	if len(errs) != 1 || errs[0].Field != "spec.interval" {
		t.Fatalf("expected one error on spec.interval, got %v", errs)
	}
	repo.Spec.Interval = "30s"
	if errs := ValidateGitRepositoryUpdate(repo, old); len(errs) != 0 {
		t.Fatalf("expected a valid update, got %v", errs)
	}
}

func TestValidateGitRepositoryStatusUpdate(t *testing.T) {
	pending := &alumiini.SyncRequestRecord{ID: "a"}
	cases := []struct {
		name    string
		old     *alumiini.SyncRequestRecord
		mutate  func(*alumiini.GitRepositoryStatus)
		field   string
		errType field.ErrorType
	}{
		{name: "synced", mutate: func(s *alumiini.GitRepositoryStatus) {
			s.Phase = alumiini.PhaseSynced
			s.LastSyncedCommit = "0123456789abcdef0123456789abcdef01234567"
		}},
		{name: "unknown phase", mutate: func(s *alumiini.GitRepositoryStatus) { s.Phase = "Happy" }, field: "status.phase", errType: field.ErrorTypeNotSupported},
		{name: "bad commit", mutate: func(s *alumiini.GitRepositoryStatus) { s.LastSyncedCommit = "xyz" }, field: "status.lastSyncedCommit", errType: field.ErrorTypeInvalid},
		{name: "bad condition", mutate: func(s *alumiini.GitRepositoryStatus) {
			s.Conditions = []metav1.Condition{{Type: "Ready", Status: "Maybe", Reason: "X", LastTransitionTime: metav1.Now()}}
		}, field: "status.conditions[0].status", errType: field.ErrorTypeNotSupported},
		{name: "keep pending", old: pending, mutate: func(s *alumiini.GitRepositoryStatus) { s.PendingSyncRequest = pending }},
		{name: "clear pending", old: pending, mutate: func(s *alumiini.GitRepositoryStatus) { s.PendingSyncRequest = nil }},
		{name: "invent pending", mutate: func(s *alumiini.GitRepositoryStatus) { s.PendingSyncRequest = pending },
			field: "status.pendingSyncRequest", errType: field.ErrorTypeForbidden},
		{name: "swap pending", old: pending, mutate: func(s *alumiini.GitRepositoryStatus) {
			s.PendingSyncRequest = &alumiini.SyncRequestRecord{ID: "b"}
		}, field: "status.pendingSyncRequest", errType: field.ErrorTypeForbidden},
		{name: "result phase", mutate: func(s *alumiini.GitRepositoryStatus) {
			s.LastSyncRequest = &alumiini.SyncRequestRecord{ID: "a", Result: &alumiini.SyncResult{Phase: alumiini.PhaseSyncing}}
		}, field: "status.lastSyncRequest.result.phase", errType: field.ErrorTypeNotSupported},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old := validRepo()
			old.ResourceVersion = "1"
			old.Status.PendingSyncRequest = tc.old
			repo := old.DeepCopy()
			tc.mutate(&repo.Status)
			errs := ValidateGitRepositoryStatusUpdate(repo, old)
			if tc.field == "" {
				if len(errs) != 0 {
					t.Fatalf("expected valid, got %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.field || errs[0].Type != tc.errType {
				t.Fatalf("expected one %s error on %s, got %v", tc.errType, tc.field, errs)
			}
		})
	}
}

func TestValidateSyncRequest(t *testing.T) {
	cases := []struct {
		name  string
		spec  alumiini.GitRepositorySyncRequestSpec
		field string
	}{
		{name: "empty", spec: alumiini.GitRepositorySyncRequestSpec{}},
		{name: "commit", spec: alumiini.GitRepositorySyncRequestSpec{Revision: "0123456789abcdef0123456789abcdef01234567"}},
		{name: "branch", spec: alumiini.GitRepositorySyncRequestSpec{Revision: "release/2"}},
		{name: "bad revision", spec: alumiini.GitRepositorySyncRequestSpec{Revision: "a..b"}, field: "spec.revision"},
		{name: "wait 30s", spec: alumiini.GitRepositorySyncRequestSpec{Wait: true, TimeoutSeconds: ptr.To[int32](30)}},
		{name: "wait too long", spec: alumiini.GitRepositorySyncRequestSpec{Wait: true, TimeoutSeconds: ptr.To[int32](31)}, field: "spec.timeoutSeconds"},
		{name: "wait zero", spec: alumiini.GitRepositorySyncRequestSpec{Wait: true, TimeoutSeconds: ptr.To[int32](0)}, field: "spec.timeoutSeconds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			errs := ValidateSyncRequest(&alumiini.GitRepositorySyncRequest{Spec: tc.spec})
			if tc.field == "" {
				if len(errs) != 0 {
					t.Fatalf("expected valid, got %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.field {
				t.Fatalf("expected one error on %s, got %v", tc.field, errs)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	cases := map[string]string{
		"https://bob:pw@example.com/repo": "https://redacted@example.com/repo",
		"https://example.com/repo":        "https://example.com/repo",
		"git:pw@example.com:repo":         "redacted@example.com:repo",
		"git@example.com:repo":            "git@example.com:repo",
		"https://bob:p%zz@example.com/r":  "https://redacted@example.com/r",
		"ssh://git@example.com/r.git":     "ssh://git@example.com/r.git",
		"ssh://git:pw@example.com/r.git":  "ssh://redacted@example.com/r.git",
		// Tokens pasted without a scheme: the 422 must not show them.
		"//oauth2:glpat-SECRET@gitlab.com/org/repo.git": "redacted@gitlab.com/org/repo.git",
		"ghp_SECRET@github.com/org/repo.git":            "redacted@github.com/org/repo.git",
	}
	for in, want := range cases {
		if errs := validateURL(in, field.NewPath("spec", "url")); strings.Contains(fmt.Sprint(errs), "SECRET") {
			t.Errorf("the error for %q shows the secret: %v", in, errs)
		}
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIgnorePaths(t *testing.T) {
	for p, ok := range map[string]bool{
		"/spec/replicas": true, "/data/version": true, "/spec/template/spec/containers/0/image": true,
		"/metadata/annotations/example.com~1owner": true, "/metadata/labels/team": true,
		"/metadata": false, "/metadata/managedFields": false, "/metadata/ownerReferences": false, "/metadata/finalizers": false,
		"/metadata/uid": false, "/metadata/name": false, "/metadata/labels": false, "/metadata/labels/": false,
		"/metadata/labels/alumiini.false.systems~1name": false, "/metadata/annotations/alumiini.false.systems~1suspend-heal": false,
		"/metadata/labels/a/b": false, "/status": false, "/status/replicas": false, "/kind": false, "spec/replicas": false,
		"/spec/~2": false,
	} {
		if got := checkIgnorePath(p) == ""; got != ok {
			t.Errorf("%s: accepted %v, want %v (%s)", p, got, ok, checkIgnorePath(p))
		}
	}
}

// TestMetadataIsBoundedAsStored: whoever may update a GitRepository cannot
// grow it until the status alumiini writes no longer fits etcd, by labels,
// escaped annotations or managers' entries; one stored larger before the
// bound still takes writes that do not grow it.
func TestMetadataIsBoundedAsStored(t *testing.T) {
	labelled := validRepo()
	labelled.Labels = map[string]string{}
	for i := range 4000 {
		labelled.Labels[fmt.Sprintf("padding-%d", i)] = strings.Repeat("x", 63)
	}
	escaped := validRepo()
	escaped.Annotations = map[string]string{"note": strings.Repeat("<", 50<<10)} // 50 KiB, 300 KiB as JSON
	for name, repo := range map[string]*alumiini.GitRepository{"4,000 labels": labelled, "escaped annotations": escaped} {
		errs := ValidateGitRepository(repo)
		if len(errs) != 1 || errs[0].Field != "metadata" || !strings.Contains(errs[0].Detail, "etcd's request limit") {
			t.Errorf("%s: %v, want one error on metadata", name, errs)
		}
	}
	small := validRepo()
	small.ResourceVersion = "1"
	small.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply,
		FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:url":{}}}`)}}}
	if errs := ValidateGitRepository(small); len(errs) > 0 {
		t.Errorf("a small GitRepository: %v", errs)
	}
	managed := small.DeepCopy()
	for i := range 2000 {
		managed.ManagedFields = append(managed.ManagedFields, metav1.ManagedFieldsEntry{Manager: fmt.Sprintf("manager-%d", i),
			Operation: metav1.ManagedFieldsOperationApply, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:url":{}},"f:metadata":{"f:labels":{"f:padding":{}}}}`)}})
	}
	if errs := ValidateGitRepositoryUpdate(managed, small); len(errs) != 1 || errs[0].Field != "metadata" {
		t.Errorf("2,000 managers' entries: %v, want one error on metadata", errs)
	}
	// Stored before the bound: the controller may still take its finalizer off.
	legacy := labelled.DeepCopy()
	legacy.ResourceVersion, legacy.Finalizers = "1", []string{alumiini.FinalizerPrune}
	released := legacy.DeepCopy()
	released.Finalizers = nil
	if errs := ValidateGitRepositoryUpdate(released, legacy); len(errs) > 0 {
		t.Errorf("an update that does not grow metadata already over the bound: %v", errs)
	}
}
