package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	typedv1alpha1 "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned/typed/alumiini/v1alpha1"
)

func TestSyncRecordsRequest(t *testing.T) {
	ts := startServer(t, t.TempDir())
	ctx := context.Background()
	repos := ts.Client.AlumiiniV1alpha1().GitRepositories("default")
	if _, err := repos.Create(ctx, newRepo("demo"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	answer, err := repos.Sync(ctx, "demo", &v1alpha1.GitRepositorySyncRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	if answer.Status.ID == "" || answer.Status.AcceptedAt == nil || answer.Status.Phase != v1alpha1.PhasePending {
		t.Fatalf("answer lacks id, accepted time or Pending phase: %+v", answer.Status)
	}
	if answer.Name != "demo" || answer.Namespace != "default" {
		t.Errorf("answer names %s/%s, want default/demo", answer.Namespace, answer.Name)
	}
	stored, err := repos.Get(ctx, "demo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pending := stored.Status.PendingSyncRequest
	if pending == nil || pending.ID != answer.Status.ID {
		t.Fatalf("the request is not recorded on the GitRepository: %+v", stored.Status)
	}
	if pending.RequestedBy == "" {
		t.Errorf("the record does not say who asked")
	}

	// An equal request while one is pending joins it.
	again, err := repos.Sync(ctx, "demo", &v1alpha1.GitRepositorySyncRequest{Spec: v1alpha1.GitRepositorySyncRequestSpec{Force: true}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("second sync: %v", err)
	}
	if again.Status.ID != answer.Status.ID {
		t.Errorf("a second request while one is pending got id %s, want the pending %s", again.Status.ID, answer.Status.ID)
	}
	stored, _ = repos.Get(ctx, "demo", metav1.GetOptions{})
	if !stored.Status.PendingSyncRequest.Force {
		t.Errorf("force asked by the joining request was lost")
	}
	if !stored.Status.PendingSyncRequest.Rejoined {
		t.Errorf("the pending request is not marked rejoined (a sync under way must run again)")
	}
	if stored.Status.PendingSyncRequest.RequestedBy != pending.RequestedBy {
		t.Errorf("a join changed who asked: %q, want %q", stored.Status.PendingSyncRequest.RequestedBy, pending.RequestedBy)
	}
	// A request for another revision while one is pending is refused.
	_, err = repos.Sync(ctx, "demo", &v1alpha1.GitRepositorySyncRequest{Spec: v1alpha1.GitRepositorySyncRequestSpec{Revision: "release"}}, metav1.CreateOptions{})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), answer.Status.ID) {
		t.Errorf("other revision while pending: got %v, want a conflict naming the pending request", err)
	}
}

func TestSyncDryRunRecordsNothing(t *testing.T) {
	ts := startServer(t, t.TempDir())
	ctx := context.Background()
	repos := ts.Client.AlumiiniV1alpha1().GitRepositories("default")
	created, err := repos.Create(ctx, newRepo("demo"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	answer, err := repos.Sync(ctx, "demo", &v1alpha1.GitRepositorySyncRequest{Spec: v1alpha1.GitRepositorySyncRequestSpec{Wait: true}},
		metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("dry-run sync: %v", err)
	}
	if answer.Status.ID == "" || answer.Status.Phase != v1alpha1.PhasePending {
		t.Errorf("dry-run answer: %+v", answer.Status)
	}
	stored, _ := repos.Get(ctx, "demo", metav1.GetOptions{})
	if stored.Status.PendingSyncRequest != nil || stored.ResourceVersion != created.ResourceVersion {
		t.Errorf("a dry-run sync changed the GitRepository: %+v", stored.Status)
	}
}

func TestSyncErrors(t *testing.T) {
	ts := startServer(t, t.TempDir())
	ctx := context.Background()
	repos := ts.Client.AlumiiniV1alpha1().GitRepositories("default")
	suspended := newRepo("asleep")
	suspended.Spec.Suspend = true
	if _, err := repos.Create(ctx, suspended, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := repos.Create(ctx, newRepo("demo"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name    string
		repo    string
		req     v1alpha1.GitRepositorySyncRequest
		check   func(error) bool
		message string
	}{
		{name: "missing", repo: "nope", check: apierrors.IsNotFound, message: `"nope" not found`},
		{name: "suspended", repo: "asleep", check: apierrors.IsConflict, message: "suspended"},
		{name: "name mismatch", repo: "demo", req: v1alpha1.GitRepositorySyncRequest{ObjectMeta: metav1.ObjectMeta{Name: "other"}},
			check: apierrors.IsInvalid, message: "metadata.name"},
		{name: "timeout too long", repo: "demo", req: v1alpha1.GitRepositorySyncRequest{Spec: v1alpha1.GitRepositorySyncRequestSpec{Wait: true, TimeoutSeconds: ptr.To[int32](300)}},
			check: apierrors.IsInvalid, message: "spec.timeoutSeconds"},
		{name: "bad revision", repo: "demo", req: v1alpha1.GitRepositorySyncRequest{Spec: v1alpha1.GitRepositorySyncRequestSpec{Revision: "a b"}},
			check: apierrors.IsInvalid, message: "spec.revision"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := repos.Sync(ctx, tc.repo, &tc.req, metav1.CreateOptions{})
			if !tc.check(err) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.message)
			}
		})
	}
}

// playController does the controller's part for one request: it waits for
// the pending request, then writes its result through the status subresource.
func playController(ctx context.Context, t *testing.T, repos typedv1alpha1.GitRepositoryInterface, name string, result v1alpha1.SyncResult) {
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		repo, err := repos.Get(ctx, name, metav1.GetOptions{})
		if err != nil || repo.Status.PendingSyncRequest == nil {
			return false, nil
		}
		handled := repo.Status.PendingSyncRequest.DeepCopy()
		handled.HandledAt = ptr.To(metav1.Now())
		handled.Result = &result
		repo.Status.PendingSyncRequest = nil
		repo.Status.LastSyncRequest = handled
		repo.Status.Phase = result.Phase
		repo.Status.LastSyncedCommit = result.Commit
		_, err = repos.UpdateStatus(ctx, repo, metav1.UpdateOptions{})
		if err != nil {
			t.Logf("writing the result: %v", err)
		}
		return err == nil, nil
	})
	if err != nil {
		t.Errorf("playing the controller: %v", err)
	}
}

// TestSyncWaitReturnsResult waits through the server's own watch of the
// GitRepository: served by the watch cache (the default), and by etcd.
func TestSyncWaitReturnsResult(t *testing.T) {
	withAndWithoutWatchCache(t, testSyncWaitReturnsResult)
}

func testSyncWaitReturnsResult(t *testing.T, ts *testServer) {
	ctx := context.Background()
	repos := ts.Client.AlumiiniV1alpha1().GitRepositories("default")
	if _, err := repos.Create(ctx, newRepo("demo"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	result := v1alpha1.SyncResult{
		Phase:    v1alpha1.PhaseSynced,
		Commit:   "0123456789abcdef0123456789abcdef01234567",
		Message:  "applied 3 objects",
		Objects:  v1alpha1.ObjectCounts{Created: 2, Configured: 1},
		Duration: metav1.Duration{Duration: 1500 * time.Millisecond},
	}
	go playController(ctx, t, repos, "demo", result)

	start := time.Now()
	answer, err := repos.Sync(ctx, "demo", &v1alpha1.GitRepositorySyncRequest{Spec: v1alpha1.GitRepositorySyncRequestSpec{Wait: true, TimeoutSeconds: ptr.To[int32](20)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("sync with wait: %v", err)
	}
	if answer.Status.Phase != v1alpha1.PhaseSynced || answer.Status.Commit != result.Commit || answer.Status.HandledAt == nil ||
		answer.Status.Objects == nil || answer.Status.Objects.Created != 2 || answer.Status.Objects.Configured != 1 ||
		answer.Status.Message != result.Message || answer.Status.Duration == nil || answer.Status.Duration.Duration != result.Duration.Duration {
		t.Fatalf("the answer does not carry the result: %+v", answer.Status)
	}
	t.Logf("sync with wait answered in %s", time.Since(start).Round(time.Millisecond))
}

func TestSyncWaitTimesOutAndStaysQueued(t *testing.T) {
	ts := startServer(t, t.TempDir())
	ctx := context.Background()
	repos := ts.Client.AlumiiniV1alpha1().GitRepositories("default")
	if _, err := repos.Create(ctx, newRepo("demo"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := repos.Sync(ctx, "demo", &v1alpha1.GitRepositorySyncRequest{Spec: v1alpha1.GitRepositorySyncRequestSpec{Wait: true, TimeoutSeconds: ptr.To[int32](1)}}, metav1.CreateOptions{})
	if !apierrors.IsTimeout(err) || !strings.Contains(err.Error(), "stays queued") {
		t.Fatalf("got %v, want a timeout saying the request stays queued", err)
	}
	if status, ok := err.(apierrors.APIStatus); !ok || status.Status().Code != http.StatusGatewayTimeout {
		t.Errorf("timeout status code: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("a 1s wait took %s", elapsed)
	}
	stored, _ := repos.Get(ctx, "demo", metav1.GetOptions{})
	if stored.Status.PendingSyncRequest == nil || !strings.Contains(err.Error(), stored.Status.PendingSyncRequest.ID) {
		t.Errorf("after the timeout the request is not queued under the id the error names: %+v", stored.Status)
	}
}

func TestSyncWaitDeleted(t *testing.T) {
	ts := startServer(t, t.TempDir())
	ctx := context.Background()
	repos := ts.Client.AlumiiniV1alpha1().GitRepositories("default")
	if _, err := repos.Create(ctx, newRepo("demo"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			repo, err := repos.Get(ctx, "demo", metav1.GetOptions{})
			if err != nil || repo.Status.PendingSyncRequest == nil {
				return false, nil
			}
			return true, repos.Delete(ctx, "demo", metav1.DeleteOptions{})
		})
	}()
	_, err := repos.Sync(ctx, "demo", &v1alpha1.GitRepositorySyncRequest{Spec: v1alpha1.GitRepositorySyncRequestSpec{Wait: true, TimeoutSeconds: ptr.To[int32](20)}}, metav1.CreateOptions{})
	status, ok := err.(apierrors.APIStatus)
	if !ok || status.Status().Code != http.StatusGone || !strings.Contains(err.Error(), "deleted while") {
		t.Fatalf("got %v, want 410 Gone saying it was deleted while waiting", err)
	}
}

// TestWaitingSyncRequestsPerUserAreBounded: each waiting request holds a
// watch and a goroutine, so one user holds at most ten; the eleventh is
// told 429 at once, and once the others are done the user may wait again.
func TestWaitingSyncRequestsPerUserAreBounded(t *testing.T) {
	ts := startServer(t, t.TempDir())
	ctx := context.Background()
	repos := ts.Client.AlumiiniV1alpha1().GitRepositories("default")
	if _, err := repos.Create(ctx, newRepo("demo"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// client-go retries a 429 after its Retry-After; ask once, as the answer
	// is what this test is about.
	waitOnce := func(seconds int32) error {
		body := &v1alpha1.GitRepositorySyncRequest{Spec: v1alpha1.GitRepositorySyncRequestSpec{Wait: true, TimeoutSeconds: ptr.To(seconds)}}
		return ts.Client.AlumiiniV1alpha1().RESTClient().Post().Namespace("default").Resource("gitrepositories").
			Name("demo").SubResource("sync").Body(body).MaxRetries(0).Do(ctx).Error()
	}
	// Twelve at once, each waiting 5 s (no controller runs here, so every
	// one waits its full time): ten wait, two are refused.
	results := make(chan error, 12)
	for range 12 {
		go func() { results <- waitOnce(5) }()
	}
	refused, timedOut := 0, 0
	for range 12 {
		switch err := <-results; {
		case apierrors.IsTooManyRequests(err):
			refused++
			if !strings.Contains(err.Error(), "already has 10 sync requests waiting") {
				t.Errorf("the refusal does not say why: %v", err)
			}
		case apierrors.IsTimeout(err):
			timedOut++
		default:
			t.Errorf("a waiting request: %v", err)
		}
	}
	if refused != 2 || timedOut != 10 {
		t.Fatalf("%d refused and %d waited, want 2 and 10", refused, timedOut)
	}
	if err := waitOnce(1); apierrors.IsTooManyRequests(err) {
		t.Errorf("after the others finished: %v", err)
	}
}
