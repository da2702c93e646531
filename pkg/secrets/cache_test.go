package secrets

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

// These unit tests use client-go's fake clientset; TestSecretCacheAgainstKubeAPIServer
// (test/e2e) runs the cache against the real kube-apiserver.

func secret(name, password string, annotations map[string]string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "team", Annotations: annotations},
		Data: map[string][]byte{"username": []byte("alice"), "password": []byte(password), "other": []byte("x")}}
}

// handMade registers a watch with no informer, for calling shrink directly.
func handMade(c *Cache, namespace, name string) *watch {
	w := &watch{key: types.NamespacedName{Namespace: namespace, Name: name}, lastRead: time.Now(), stop: func() {}}
	c.watches[w.key] = w
	return w
}

var options = Options{Keys: []string{"username", "password"}, MaxBytes: 1 << 20, MaxBytesPerNamespace: 1 << 20,
	MaxWatches: 10, MaxWatchesPerNamespace: 10, IdleAfter: time.Hour, SyncTimeout: time.Minute}

// TestShrinkKeepsOnlyWhatGitReadsAndIsIdempotent: a Secret is held with
// its name and git's keys only (no annotations: kubectl's last-applied
// copy holds every key), counted once however often client-go transforms
// it (a watch that lists transforms twice, which once emptied the data).
func TestShrinkKeepsOnlyWhatGitReadsAndIsIdempotent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := New(ctx, fake.NewClientset(), options)
	w := handMade(c, "team", "s")
	big := secret("s", "pw", map[string]string{"kubectl.kubernetes.io/last-applied-configuration": string(make([]byte, 200<<10))})
	once := c.shrink(w, big).(*corev1.Secret)
	twice := c.shrink(w, once).(*corev1.Secret)
	if string(twice.Data["password"]) != "pw" || twice.Data["other"] != nil || len(twice.Annotations) != 1 {
		t.Errorf("shrunk twice: data %q, annotations %d", twice.Data, len(twice.Annotations))
	}
	if want := len("username") + len("alice") + len("password") + len("pw"); c.bytes != want || c.nsBytes["team"] != want {
		t.Errorf("counted %d bytes (%d in the namespace), want %d", c.bytes, c.nsBytes["team"], want)
	}
}

// TestANamespacePastItsShareIsReadWithGets: one namespace's Secrets past
// MaxBytesPerNamespace are held without data and read with a GET; another
// namespace keeps its share.
func TestANamespacePastItsShareIsReadWithGets(t *testing.T) {
	opts := options
	opts.MaxBytesPerNamespace = 30
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := New(ctx, fake.NewClientset(), opts)
	first, second, other := handMade(c, "team", "a"), handMade(c, "team", "b"), handMade(c, "other", "a")
	if got := c.shrink(first, secret("a", "pw", nil)).(*corev1.Secret); got.Data == nil {
		t.Error("the first Secret of a namespace, within its share, is held without data")
	}
	if got := c.shrink(second, secret("b", "pw", nil)).(*corev1.Secret); got.Data != nil {
		t.Error("a Secret past its namespace's share is held with data")
	}
	if got := c.shrink(other, secret("a", "pw", nil)).(*corev1.Secret); got.Data == nil {
		t.Error("another namespace lost its share")
	}
}

// TestAFailingListIsNotWaitedFor: a watch whose list kube-apiserver
// refuses (RBAC granting only get) ends the read's wait at once, and the
// read is a GET; later reads GET without a new watch.
func TestAFailingListIsNotWaitedFor(t *testing.T) {
	client := fake.NewClientset(secret("s", "pw", nil))
	client.PrependReactor("list", "secrets", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("secrets"), "", nil)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := New(ctx, client, options) // SyncTimeout: a minute
	for range 3 {
		started := time.Now()
		data, err := c.Data(context.Background(), "team", "s")
		if err != nil || string(data["password"]) != "pw" {
			t.Fatalf("read %q, %v", data, err)
		}
		if took := time.Since(started); took > 30*time.Second {
			t.Fatalf("a read waited %s for a list that failed", took)
		}
	}
	if c.Watches() != 1 {
		t.Errorf("%d watches after a refused one; want the one, held as failed", c.Watches())
	}
}
