package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/controller"
	alumiiniv1alpha1 "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned/typed/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/git"
	"github.com/falsesystems/alumiini/pkg/manifest"
	"github.com/falsesystems/alumiini/test/gitserver"
	"github.com/falsesystems/alumiini/test/localcluster"
)

// TestPanickingRenderIsIsolated runs the real controller (in this process,
// over the in-process API server, applying to a real kube-apiserver) with 51
// GitRepositories: one whose rendering panics on every attempt, 50 healthy.
// The healthy ones become Ready and keep polling on their 10s interval; the
// panicking one is restarted, then marked Stalled with the panic's message.
// It also checks managedFields (checkManagedFields).
func TestPanickingRenderIsIsolated(t *testing.T) {
	dir := t.TempDir()
	target, err := localcluster.StartForTest(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Stop()
	targetConfig, err := target.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	targetConfig.QPS, targetConfig.Burst = 1000, 2000
	ts := startServer(t, t.TempDir())
	git1, err := gitserver.Start(t.TempDir(), "127.0.0.1:0", gitserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer git1.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	const healthy = 50
	for i := 0; i <= healthy; i++ {
		if _, err := git1.Commit(ctx, fmt.Sprintf("r%02d", i), "main", map[string]gitserver.File{
			"deploy/cm.yaml": {Content: fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%02d\n", i)},
		}); err != nil {
			t.Fatal(err)
		}
	}
	cache, err := git.NewCache(git.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	render := func(ctx context.Context, dir string, read manifest.ReadFunc, opts ...manifest.Option) ([]manifest.Object, error) {
		files, err := read(ctx, dir)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			if strings.Contains(string(f.Data), "cm-50") {
				panic("rendering exploded on purpose")
			}
		}
		return manifest.Render(ctx, dir, read, opts...)
	}
	// The controller writes as a field manager of its own, so its entries
	// in managedFields are told apart from the test's.
	controllerConfig := rest.CopyConfig(ts.RESTConfig)
	controllerConfig.UserAgent = "alumiini-controller"
	c, err := controller.New(controller.Config{
		APIConfig:    controllerConfig,
		TargetConfig: targetConfig,
		Git:          cache,
		Render:       render,
		URLKey:       func(url string) string { return url },
		Supervisor: controller.SupervisorOptions{RestartIntensity: 3, RestartPeriod: time.Minute,
			RestartBackoff: 100 * time.Millisecond, StalledRetry: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Run(ctx) }()

	repos := ts.Client.AlumiiniV1alpha1().GitRepositories("default")
	var created *v1alpha1.GitRepository // r00, as the test created it
	for i := 0; i <= healthy; i++ {
		name := fmt.Sprintf("r%02d", i)
		if i == healthy {
			name = "bad"
		}
		repo, err := repos.Create(ctx, &v1alpha1.GitRepository{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.GitRepositorySpec{URL: fmt.Sprintf("%s/r%02d.git", git1.BaseURL(), i), Path: "deploy",
				Interval: "10s", TargetNamespace: "default"},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			created = repo
		}
	}

	// Everyone healthy becomes Ready; "bad" becomes Stalled.
	deadline := time.Now().Add(60 * time.Second)
	var stalled *v1alpha1.GitRepository
	for {
		list, err := repos.List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ready := 0
		for i := range list.Items {
			repo := &list.Items[i]
			for _, cond := range repo.Status.Conditions {
				if repo.Name != "bad" && cond.Type == v1alpha1.ConditionReady && cond.Status == metav1.ConditionTrue {
					ready++
				}
				if repo.Name == "bad" && cond.Type == v1alpha1.ConditionStalled && cond.Status == metav1.ConditionTrue {
					stalled = repo
				}
			}
		}
		if ready == healthy && stalled != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %d of %d healthy Ready, bad stalled: %v", ready, healthy, stalled != nil)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(stalled.Status.Message, "rendering exploded on purpose") || stalled.Status.Phase != v1alpha1.PhaseFailed {
		t.Errorf("the stalled GitRepository's status: %s %q", stalled.Status.Phase, stalled.Status.Message)
	}
	checkManagedFields(ctx, t, c, repos, created)

	// The healthy ones keep their cadence: over 25s at a 10s interval (a
	// poll ½ to 1½ intervals after the last, 10 s in a steady state) each
	// lists its remote at least twice more.
	before := map[string]int{}
	for i := 0; i < healthy; i++ {
		before[fmt.Sprintf("r%02d.git", i)] = git1.Requests(fmt.Sprintf("r%02d.git", i)).RefListings
	}
	time.Sleep(25 * time.Second)
	var late []string
	for repo, n := range before {
		if polls := git1.Requests(repo).RefListings - n; polls < 2 {
			late = append(late, fmt.Sprintf("%s polled %d times", repo, polls))
		}
	}
	if len(late) > 0 {
		t.Errorf("healthy repositories fell behind beside a crashing one: %v", late)
	}

	// The in-process trigger (what the webhook receiver uses) syncs at once.
	// Just after a poll, and past the 2 s the listing is cached for, the
	// next poll is 10 s away: only the trigger can make it list now.
	polled := git1.Requests("r00.git").RefListings
	deadline = time.Now().Add(15 * time.Second)
	for git1.Requests("r00.git").RefListings == polled && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2500 * time.Millisecond)
	listings := git1.Requests("r00.git").RefListings
	if !c.Trigger("default", "r00") {
		t.Fatal("Trigger does not know default/r00")
	}
	deadline = time.Now().Add(5 * time.Second)
	for git1.Requests("r00.git").RefListings == listings {
		if time.Now().After(deadline) {
			t.Error("a trigger did not make the worker list its remote")
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkManagedFields: the controller's informer holds GitRepositories
// without managedFields, and its status writes leave the stored ones whole:
// `kubectl get --show-managed-fields` still names the creator's fields
// beside the controller's status.
func checkManagedFields(ctx context.Context, t *testing.T, c *controller.Controller,
	repos alumiiniv1alpha1.GitRepositoryInterface, created *v1alpha1.GitRepository) {
	t.Helper()
	for _, cached := range c.Repositories(created.Spec.URL) {
		if len(cached.ManagedFields) > 0 {
			t.Errorf("the controller's informer holds %s with %d managedFields entries; want none",
				cached.Name, len(cached.ManagedFields))
		}
	}
	if len(c.Repositories(created.Spec.URL)) == 0 {
		t.Errorf("the controller's informer has nothing under %s", created.Spec.URL)
	}
	stored, err := repos.Get(ctx, created.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var creator, statusWriter bool
	for _, entry := range stored.ManagedFields {
		for _, was := range created.ManagedFields {
			creator = creator || entry.Manager == was.Manager && entry.Subresource == "" &&
				entry.FieldsV1 != nil && was.FieldsV1 != nil && string(entry.FieldsV1.Raw) == string(was.FieldsV1.Raw)
		}
		statusWriter = statusWriter || entry.Manager == "alumiini-controller" && entry.Subresource == "status"
	}
	if !creator || !statusWriter {
		t.Errorf("after the controller's status writes, %s has managedFields %s; want the creator's entry as created "+
			"(%v) and alumiini-controller's for status (%v)", created.Name, describeManagedFields(stored), creator, statusWriter)
	}
}

func describeManagedFields(repo *v1alpha1.GitRepository) string {
	var entries []string
	for _, entry := range repo.ManagedFields {
		entries = append(entries, fmt.Sprintf("%s/%s %s", entry.Manager, entry.Operation, entry.Subresource))
	}
	return "[" + strings.Join(entries, ", ") + "]"
}
