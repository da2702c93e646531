package controller

import (
	"context"
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	clienttesting "k8s.io/client-go/testing"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/generated/clientset/versioned/fake"
)

// TestNotReadyUntilTheGitRepositoriesAreListed: /readyz's controller check
// (Synced) fails while the GitRepository informer has listed nothing (here
// it never started, and no API server would answer it), so a replica that
// cannot sync yet takes no traffic. The e2e suite shows the check passing
// once the informer has synced.
func TestNotReadyUntilTheGitRepositoriesAreListed(t *testing.T) {
	nowhere := &rest.Config{Host: "http://127.0.0.1:1"}
	c, err := New(Config{APIConfig: nowhere, TargetConfig: nowhere})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.broadcast.Shutdown)
	if err := c.Synced(); err == nil || !strings.Contains(err.Error(), "has not synced") {
		t.Errorf("Synced before any list: %v, want an error saying the informer has not synced", err)
	}
}

// TestAStatusWriteNeverLandsOnANewObjectOfTheSameName: a GitRepository
// deleted and created again under its name while an old sync still writes
// its outcome; the write (the old one's inventory, conditions) is refused,
// not put on the new object, whose next sync would otherwise prune by it.
func TestAStatusWriteNeverLandsOnANewObjectOfTheSameName(t *testing.T) {
	old := &v1alpha1.GitRepository{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "app", UID: "old", ResourceVersion: "1"}}
	recreated := old.DeepCopy()
	recreated.UID, recreated.ResourceVersion = "new", "7"
	client := fake.NewSimpleClientset(recreated)
	// The fake keeps no resourceVersions; the API server refuses a write
	// from an older one with a conflict.
	client.PrependReactor("update", "gitrepositories", func(action clienttesting.Action) (bool, runtime.Object, error) {
		if obj := action.(clienttesting.UpdateAction).GetObject().(*v1alpha1.GitRepository); obj.ResourceVersion != recreated.ResourceVersion {
			return true, nil, apierrors.NewConflict(v1alpha1.Resource("gitrepositories"), obj.Name, errors.New("the object has been modified"))
		}
		return false, nil, nil
	})
	r := &Reconciler{Client: client}
	err := r.writeStatus(context.Background(), old, func(s *v1alpha1.GitRepositoryStatus, _ int64) {
		s.LastSyncedCommit = "the old object's"
	})
	if !apierrors.IsNotFound(err) {
		t.Errorf("writing the old object's status: %v, want NotFound", err)
	}
	got, _ := r.Client.AlumiiniV1alpha1().GitRepositories("team").Get(context.Background(), "app", metav1.GetOptions{})
	if got.Status.LastSyncedCommit != "" {
		t.Errorf("the new object got the old one's status: %+v", got.Status)
	}
}
