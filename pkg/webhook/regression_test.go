package webhook

import (
	"bytes"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// TestOneNamespaceCannotLockAVictimOutOfItsWebhookSecret: a tenant whose
// namespace sorts before the victim's creates 64 GitRepositories on the
// victim's (public) URL, each naming a different Secret of its own (they
// need not even exist). Candidates are sorted by namespace/name and only the
// first 64 distinct Secrets are checked, so the victim's correctly signed
// pushes are refused with 401 from then on.
func TestOneNamespaceCannotLockAVictimOutOfItsWebhookSecret(t *testing.T) {
	c := newCluster(gitRepo("victim", "app", withSecret("hook")))
	c.addSecret("victim", "hook", "victim-token")
	opts := c.options()
	opts.PlatformSecret = types.NamespacedName{}
	h := NewHandler(opts)

	if rec, _ := serve(t, h, githubRequest("push", pushTo("refs/heads/main"), "victim-token")); rec.Code != http.StatusOK {
		t.Fatalf("before the attack: status %d, want 200", rec.Code)
	}

	for i := range maxSecretsPerRequest {
		// Secrets that do not exist: NotFound is cached as "no data".
		c.repos = append(c.repos, gitRepo("aaa-attacker", fmt.Sprintf("squat-%02d", i), withSecret(fmt.Sprintf("s%02d", i))))
	}
	c.advance(time.Minute) // past the secret cache TTL

	rec, a := serve(t, h, githubRequest("push", pushTo("refs/heads/main"), "victim-token"))
	if rec.Code != http.StatusOK {
		t.Errorf("after the attack: status %d, error %q, message %q; want the victim's push to verify", rec.Code, a.Error, a.Message)
	}
}

// TestSecretCacheKeepsOnlyWhatItChecksAndDropsExpired: one unsigned request
// makes the Secrets on a URL be read; the cache keeps only the keys that
// verify signatures, and drops an entry once it has expired.
func TestSecretCacheKeepsOnlyWhatItChecksAndDropsExpired(t *testing.T) {
	c := newCluster()
	const n = 64
	big := bytes.Repeat([]byte("x"), 512<<10)
	for i := range n {
		ns := fmt.Sprintf("t%03d", i)
		c.repos = append(c.repos, gitRepo(ns, "app", withSecret("hook")))
		c.secrets[types.NamespacedName{Namespace: ns, Name: "hook"}] = map[string][]byte{"token": []byte("t"), "padding": bytes.Clone(big)}
	}
	opts := c.options()
	opts.PlatformSecret = types.NamespacedName{}
	h := NewHandler(opts).(*handler)

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	// One unsigned request from anyone makes every Secret on the URL be read.
	rec, _ := serve(t, h, githubRequest("push", pushTo("refs/heads/main"), "nobody-knows"))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", rec.Code)
	}
	// The cluster's copies go away; only the cache's references remain.
	c.secrets = map[types.NamespacedName]map[string][]byte{}
	c.advance(time.Hour)
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	h.secrets.mu.Lock()
	held, bytesHeld := len(h.secrets.entries), 0
	for _, e := range h.secrets.entries {
		for _, v := range e.data {
			bytesHeld += len(v)
		}
	}
	h.secrets.mu.Unlock()
	if bytesHeld > n*maxSecretValueBytes {
		t.Errorf("the cache holds %d KiB of Secret data in %d entries (heap grew %d KiB); only keys it checks may stay",
			bytesHeld>>10, held, (int64(after.HeapAlloc)-int64(before.HeapAlloc))>>10)
	}
	// Any lookup now finds them expired and drops them.
	if data, ok := h.secrets.lookup(types.NamespacedName{Namespace: "t000", Name: "hook"}); ok || data != nil {
		t.Error("an expired entry was returned")
	}
	h.secrets.mu.Lock()
	defer h.secrets.mu.Unlock()
	if _, ok := h.secrets.entries[types.NamespacedName{Namespace: "t000", Name: "hook"}]; ok {
		t.Error("an expired entry looked up stays cached")
	}
}
