package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
)

func newRepo(name string) *v1alpha1.GitRepository {
	return &v1alpha1.GitRepository{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"team": "web"}},
		Spec:       v1alpha1.GitRepositorySpec{URL: "https://git.example.com/org/" + name + ".git", Path: "deploy"},
	}
}

func TestGitRepositoryLifecycle(t *testing.T) {
	ts := startServer(t, t.TempDir())
	ctx := context.Background()
	repos := ts.Client.AlumiiniV1alpha1().GitRepositories("default")

	// Create: defaults applied, status the user sent is dropped, generation 1.
	in := newRepo("demo")
	in.Status.Phase = v1alpha1.PhaseSynced
	created, err := repos.Create(ctx, in, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.Spec.Branch != "main" || created.Spec.Interval != "5m" || created.Spec.Timeout != "1m" || !*created.Spec.Prune {
		t.Errorf("defaults not applied: %+v", created.Spec)
	}
	if created.Status.Phase != v1alpha1.PhasePending {
		t.Errorf("create kept the status the client sent, want only phase Pending: %+v", created.Status)
	}
	if created.Generation != 1 {
		t.Errorf("generation = %d, want 1", created.Generation)
	}

	// Get and list with a label selector.
	got, err := repos.Get(ctx, "demo", metav1.GetOptions{})
	if err != nil || got.Spec.URL != in.Spec.URL {
		t.Fatalf("get: %v, %+v", err, got)
	}
	other := newRepo("other")
	other.Labels = map[string]string{"team": "data"}
	if _, err := repos.Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create other: %v", err)
	}
	list, err := repos.List(ctx, metav1.ListOptions{LabelSelector: "team=web"})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != "demo" {
		t.Errorf("list team=web = %v, want only demo", names(list.Items))
	}
	list, err = repos.List(ctx, metav1.ListOptions{FieldSelector: "spec.url=" + other.Spec.URL})
	if err != nil || len(list.Items) != 1 || list.Items[0].Name != "other" {
		t.Errorf("list by spec.url = %v (%v), want only other", names(list.Items), err)
	}

	// Status update changes only status, and keeps the generation.
	got.Status.Phase = v1alpha1.PhaseSynced
	got.Status.LastSyncedCommit = "0123456789abcdef0123456789abcdef01234567"
	got.Status.ObservedGeneration = 1
	got.Spec.Path = "ignored-by-status"
	withStatus, err := repos.UpdateStatus(ctx, got, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update status: %v", err)
	}
	if withStatus.Status.Phase != v1alpha1.PhaseSynced || withStatus.Spec.Path != "deploy" || withStatus.Generation != 1 {
		t.Errorf("status update: phase %q path %q generation %d; want Synced, deploy, 1",
			withStatus.Status.Phase, withStatus.Spec.Path, withStatus.Generation)
	}

	// Spec update bumps the generation and keeps the status.
	withStatus.Spec.Interval = "30s"
	withStatus.Status.Phase = v1alpha1.PhaseFailed
	updated, err := repos.Update(ctx, withStatus, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if updated.Generation != 2 || updated.Status.Phase != v1alpha1.PhaseSynced || updated.Spec.Interval != "30s" {
		t.Errorf("update: generation %d phase %q interval %q; want 2, Synced, 30s",
			updated.Generation, updated.Status.Phase, updated.Spec.Interval)
	}
	// An update that changes only metadata keeps the generation.
	updated.Labels["tier"] = "1"
	relabelled, err := repos.Update(ctx, updated, metav1.UpdateOptions{})
	if err != nil || relabelled.Generation != 2 {
		t.Errorf("label-only update: generation %d (%v), want 2", relabelled.Generation, err)
	}

	// An update from a stale read conflicts.
	withStatus.Spec.Interval = "1m"
	if _, err := repos.Update(ctx, withStatus, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("stale update: got %v, want a conflict", err)
	}

	// Pinning a tag replaces the defaulted branch instead of being refused.
	pinned := relabelled.DeepCopy()
	pinned.Spec.Tag = "v1.0.0"
	pinned, err = repos.Update(ctx, pinned, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("pin a tag: %v", err)
	}
	if pinned.Spec.Branch != "" || pinned.Spec.Tag != "v1.0.0" {
		t.Errorf("after pinning a tag: branch %q tag %q; want no branch", pinned.Spec.Branch, pinned.Spec.Tag)
	}

	// Delete.
	if err := repos.Delete(ctx, "demo", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := repos.Get(ctx, "demo", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after delete: got %v, want NotFound", err)
	}
}

func TestInvalidGitRepositoryIsRefusedWithFieldPath(t *testing.T) {
	ts := startServer(t, t.TempDir())
	repos := ts.Client.AlumiiniV1alpha1().GitRepositories("default")
	bad := newRepo("bad")
	bad.Spec.URL = "https://user:hunter2@git.example.com/org/repo.git"
	bad.Spec.Interval = "1s"
	bad.Spec.Path = "../escape"
	_, err := repos.Create(context.Background(), bad, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("got %v, want 422 Invalid", err)
	}
	status := err.(apierrors.APIStatus).Status()
	fields := map[string]bool{}
	for _, cause := range status.Details.Causes {
		fields[cause.Field] = true
	}
	for _, want := range []string{"spec.url", "spec.interval", "spec.path"} {
		if !fields[want] {
			t.Errorf("the 422 does not name %s: %v", want, status.Details.Causes)
		}
	}
	if strings.Contains(status.Message, "hunter2") {
		t.Errorf("the error leaks the password: %s", status.Message)
	}
	// Nothing was stored.
	if _, err := repos.Get(context.Background(), "bad", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a refused object was stored: %v", err)
	}
}

// TestWatchSeesEveryChange watches through the watch cache (the default) and
// through etcd (--watch-cache=false).
func TestWatchSeesEveryChange(t *testing.T) {
	withAndWithoutWatchCache(t, testWatchSeesEveryChange)
}

func testWatchSeesEveryChange(t *testing.T, ts *testServer) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	repos := ts.Client.AlumiiniV1alpha1().GitRepositories("default")
	w, err := repos.Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Stop()

	created, err := repos.Create(ctx, newRepo("watched"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Spec.Suspend = true
	if _, err := repos.Update(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := repos.Delete(ctx, "watched", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []watch.EventType{watch.Added, watch.Modified, watch.Deleted} {
		select {
		case event := <-w.ResultChan():
			repo, _ := event.Object.(*v1alpha1.GitRepository)
			if event.Type != want || repo == nil || repo.Name != "watched" {
				t.Fatalf("got %s %T, want %s of watched", event.Type, event.Object, want)
			}
			if want == watch.Modified && !repo.Spec.Suspend {
				t.Errorf("the Modified event does not carry the change")
			}
		case <-ctx.Done():
			t.Fatalf("no %s event", want)
		}
	}
}

// TestRestartKeepsEveryObject stops the server as SIGTERM does and starts a new
// one on the same data directory: every object written before is there.
func TestRestartKeepsEveryObject(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	first := startServer(t, dir)
	const count = 25
	for i := 0; i < count; i++ {
		repo := newRepo(fmt.Sprintf("repo-%02d", i))
		if _, err := first.Client.AlumiiniV1alpha1().GitRepositories("default").Create(ctx, repo, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", repo.Name, err)
		}
	}
	last, err := first.Client.AlumiiniV1alpha1().GitRepositories("default").Get(ctx, "repo-24", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	last.Status.Phase = v1alpha1.PhaseSynced
	if _, err := first.Client.AlumiiniV1alpha1().GitRepositories("default").UpdateStatus(ctx, last, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	first.Stop(t)

	second := startServer(t, dir)
	list, err := second.Client.AlumiiniV1alpha1().GitRepositories("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list after restart: %v", err)
	}
	if len(list.Items) != count {
		t.Fatalf("after restart %d objects, want %d", len(list.Items), count)
	}
	for _, repo := range list.Items {
		if repo.Name == "repo-24" && repo.Status.Phase != v1alpha1.PhaseSynced {
			t.Errorf("the status written before the restart is lost: %+v", repo.Status)
		}
	}
}

func names(items []v1alpha1.GitRepository) []string {
	var out []string
	for _, item := range items {
		out = append(out, item.Name)
	}
	return out
}
