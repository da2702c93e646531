package e2e

import (
	"context"
	"encoding/base64"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/falsesystems/alumiini/pkg/git"
	"github.com/falsesystems/alumiini/pkg/secrets"
	"github.com/falsesystems/alumiini/test/gitserver"
)

// TestRotatedCredentialsAreUsed: a GitRepository whose Secret holds a wrong
// password fails to authenticate; fixing the Secret alone (no change to the
// GitRepository) makes it sync. (That it is read from a watch, not a GET,
// TestSecretCacheAgainstKubeAPIServer shows.)
func TestRotatedCredentialsAreUsed(t *testing.T) {
	const name = "rotated-credentials"
	right := "right-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	secretValues = append(secretValues, right, "wrong-password")
	tlsConfig, ca, err := gitserver.NewTLS()
	if err != nil {
		t.Fatal(err)
	}
	server, err := gitserver.Start(t.TempDir(), "127.0.0.1:0", gitserver.Options{TLS: tlsConfig, Username: "alice", Password: right})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if _, err := server.Commit(context.Background(), name, "main", map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}}); err != nil {
		t.Fatal(err)
	}
	createNamespace(t, name)
	secret := func(password string) string {
		return "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: " + name + "\ndata:\n" +
			"  username: " + base64.StdEncoding.EncodeToString([]byte("alice")) + "\n" +
			"  password: " + base64.StdEncoding.EncodeToString([]byte(password)) + "\n" +
			"  ca.crt: " + base64.StdEncoding.EncodeToString(ca) + "\n"
	}
	defer kubectl(t, "delete", "namespace", name, "--wait=false")
	kubectlInput(t, secret("wrong-password"), "apply", "-f", "-")
	kubectlInput(t, `apiVersion: alumiini.false.systems/v1alpha1
kind: GitRepository
metadata:
  name: `+name+`
  namespace: `+name+`
spec:
  url: `+server.BaseURL()+`/`+name+`.git
  path: deploy
  interval: 10s
  targetNamespace: `+name+`
  secretRef:
    name: creds
`, "apply", "-f", "-")
	waitForPhase(t, name, name, "Failed")
	if reason := kubectl(t, "get", "gitrepository", name, "-n", name, "-o",
		`jsonpath={.status.conditions[?(@.type=="Ready")].reason}`); reason != "AuthenticationFailed" {
		t.Fatalf("with the wrong password: reason %q, want AuthenticationFailed", reason)
	}
	kubectlInput(t, secret(right), "apply", "-f", "-")
	waitForPhase(t, name, name, "Synced")
}

// TestSecretCacheAgainstKubeAPIServer drives pkg/secrets against the real
// kube-apiserver, counting its requests: reads come from one watch per
// Secret, not a GET each; changes and deletions show; what it may not hold
// (past MaxWatches or MaxBytes) is read with a GET; an unread watch stops.
func TestSecretCacheAgainstKubeAPIServer(t *testing.T) {
	const namespace = "secret-cache"
	createNamespace(t, namespace)
	defer kubectl(t, "delete", "namespace", namespace, "--wait=false")
	config, err := cluster.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	counts := &requestCounts{byKind: map[string]int{}}
	config.Wrap(counts.wrap)
	client := kubernetes.NewForConfigOrDie(config)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	put := func(name, password string) {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
			Data: map[string][]byte{git.KeyUsername: []byte("alice"), git.KeyPassword: []byte(password), "unrelated": []byte("x")}}
		if _, err := client.CoreV1().Secrets(namespace).Update(ctx, s, metav1.UpdateOptions{}); apierrors.IsNotFound(err) {
			_, err = client.CoreV1().Secrets(namespace).Create(ctx, s, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
		} else if err != nil {
			t.Fatal(err)
		}
	}
	passwordOf := func(c *secrets.Cache, name string) (string, error) {
		data, err := c.Data(ctx, namespace, name)
		return string(data[git.KeyPassword]), err
	}
	within := func(what string, ok func() bool) {
		t.Helper()
		eventually(t, 30*time.Second, func() string {
			if ok() {
				return ""
			}
			return "not yet: " + what
		})
	}

	put("first", "one")
	cache := secrets.New(ctx, client, secrets.Options{Keys: git.SecretKeys, MaxBytes: 1 << 20, MaxBytesPerNamespace: 1 << 20,
		MaxWatches: 2, MaxWatchesPerNamespace: 2, IdleAfter: time.Hour, SyncTimeout: time.Minute})
	counts.reset()
	for range 50 {
		if password, err := passwordOf(cache, "first"); err != nil || password != "one" {
			t.Fatalf("read %q, %v; want one", password, err)
		}
	}
	if got := counts.snapshot(); got["GET"] != 0 || got["LIST"]+got["WATCH"] > 2 {
		// A LIST and a WATCH, or one WATCH that lists (client-go's WatchList).
		t.Errorf("50 reads of one Secret sent %v; want one LIST and one WATCH, no GET", got)
	}
	if data, _ := cache.Data(ctx, namespace, "first"); data["unrelated"] != nil {
		t.Errorf("a key git never reads is held: %v", data)
	}
	put("first", "two")
	within("a changed Secret is read", func() bool { p, _ := passwordOf(cache, "first"); return p == "two" })

	if _, err := cache.Data(ctx, namespace, "second"); !apierrors.IsNotFound(err) {
		t.Errorf("a missing Secret: %v, want NotFound", err)
	}
	put("second", "late")
	within("a Secret created after its first read is read", func() bool { p, _ := passwordOf(cache, "second"); return p == "late" })

	put("third", "over-the-cap")
	counts.reset()
	for range 3 {
		if password, err := passwordOf(cache, "third"); err != nil || password != "over-the-cap" {
			t.Fatalf("past MaxWatches: read %q, %v", password, err)
		}
	}
	if got := counts.snapshot(); got["GET"] != 3 || cache.Watches() != 2 {
		t.Errorf("past MaxWatches: %v and %d watches; want 3 GETs and 2 watches", got, cache.Watches())
	}

	if err := client.CoreV1().Secrets(namespace).Delete(ctx, "first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	within("a deleted Secret is NotFound", func() bool { _, err := cache.Data(ctx, namespace, "first"); return apierrors.IsNotFound(err) })

	small := secrets.New(ctx, client, secrets.Options{Keys: git.SecretKeys, MaxBytes: 1 << 20, MaxBytesPerNamespace: 10,
		MaxWatches: 10, MaxWatchesPerNamespace: 10, IdleAfter: time.Second, SyncTimeout: time.Minute})
	counts.reset()
	for range 3 {
		if password, err := passwordOf(small, "second"); err != nil || password != "late" {
			t.Fatalf("past MaxBytesPerNamespace: read %q, %v", password, err)
		}
	}
	if got := counts.snapshot(); got["GET"] != 3 {
		t.Errorf("past MaxBytesPerNamespace: %v; want a GET per read", got)
	}
	within("an unread watch stops", func() bool { return small.Watches() == 0 })

	// An identity that may get Secrets but not list or watch them: the
	// refused watch is noticed at once, and reads are GETs.
	kubectlInput(t, `apiVersion: v1
kind: ServiceAccount
metadata:
  name: getter
  namespace: `+namespace+`
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: get-secrets
  namespace: `+namespace+`
rules:
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: getter-gets-secrets
  namespace: `+namespace+`
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: get-secrets
subjects:
- kind: ServiceAccount
  name: getter
  namespace: `+namespace+`
`, "apply", "-f", "-")
	getterConfig := rest.CopyConfig(config)
	getterConfig.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + namespace + ":getter"}
	getter := secrets.New(ctx, kubernetes.NewForConfigOrDie(getterConfig), secrets.Options{Keys: git.SecretKeys,
		MaxBytes: 1 << 20, MaxBytesPerNamespace: 1 << 20, MaxWatches: 10, MaxWatchesPerNamespace: 10,
		IdleAfter: time.Hour, SyncTimeout: time.Minute})
	started := time.Now()
	within("get-only RBAC is in force", func() bool { p, _ := passwordOf(getter, "second"); return p == "late" })
	if took := time.Since(started); took > 30*time.Second {
		t.Errorf("with list and watch forbidden, a read took %s: the refusal went unnoticed until SyncTimeout", took)
	}
}

// requestCounts counts a client's requests to Secrets by kind.
type requestCounts struct {
	mu     sync.Mutex
	byKind map[string]int
}

func (c *requestCounts) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/secrets") {
			kind := "GET"
			switch {
			case r.URL.Query().Get("watch") == "true":
				kind = "WATCH"
			case strings.HasSuffix(r.URL.Path, "/secrets"):
				kind = "LIST"
			}
			c.mu.Lock()
			c.byKind[kind]++
			c.mu.Unlock()
		}
		return rt.RoundTrip(r)
	})
}

func (c *requestCounts) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.byKind)
}

func (c *requestCounts) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.byKind)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
