package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/controller"
	"github.com/falsesystems/alumiini/pkg/git"
	"github.com/falsesystems/alumiini/pkg/manifest"
	"github.com/falsesystems/alumiini/test/gitserver"
	"github.com/falsesystems/alumiini/test/localcluster"
)

// TestShardsSyncOnlyTheirOwn runs two controllers over one API server,
// with --shard-selector shard=a and shard=b: each renders only the
// GitRepositories its selector matches, and one matching neither is synced
// by no one.
func TestShardsSyncOnlyTheirOwn(t *testing.T) {
	target, err := localcluster.StartForTest(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Stop()
	targetConfig, err := target.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, t.TempDir())
	server, err := gitserver.Start(t.TempDir(), "127.0.0.1:0", gitserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	shardOf := map[string]string{"a1": "a", "a2": "a", "b1": "b", "none": ""}
	for name := range shardOf {
		if _, err := server.Commit(ctx, name, "main", map[string]gitserver.File{
			"deploy/cm.yaml": {Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-" + name + "\n"},
		}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	rendered := map[string][]string{} // shard → ConfigMaps it rendered
	for _, shard := range []string{"a", "b"} {
		cache, err := git.NewCache(git.Options{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		render := func(ctx context.Context, dir string, read manifest.ReadFunc, opts ...manifest.Option) ([]manifest.Object, error) {
			objects, err := manifest.Render(ctx, dir, read, opts...)
			mu.Lock()
			for _, o := range objects {
				if !slices.Contains(rendered[shard], o.GetName()) {
					rendered[shard] = append(rendered[shard], o.GetName())
				}
			}
			mu.Unlock()
			return objects, err
		}
		c, err := controller.New(controller.Config{APIConfig: ts.RESTConfig, TargetConfig: targetConfig, Git: cache,
			Render: render, ShardSelector: "shard=" + shard})
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = c.Run(ctx) }()
	}

	repos := ts.Client.AlumiiniV1alpha1().GitRepositories("default")
	for name, shard := range shardOf {
		repo := &v1alpha1.GitRepository{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1alpha1.GitRepositorySpec{URL: fmt.Sprintf("%s/%s.git", server.BaseURL(), name), Path: "deploy",
				Interval: "1h", TargetNamespace: "default"}}
		if shard != "" {
			repo.Labels = map[string]string{"shard": shard}
		}
		if _, err := repos.Create(ctx, repo, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		synced := 0
		for name, shard := range shardOf {
			if repo, err := repos.Get(ctx, name, metav1.GetOptions{}); err == nil && shard != "" && repo.Status.Phase == v1alpha1.PhaseSynced {
				synced++
			}
		}
		if synced == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s, %d of the 3 GitRepositories in a shard are Synced", synced)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(rendered["a"])
	if got := strings.Join(rendered["a"], ","); got != "cm-a1,cm-a2" {
		t.Errorf("shard a rendered %s, want cm-a1,cm-a2", got)
	}
	if got := strings.Join(rendered["b"], ","); got != "cm-b1" {
		t.Errorf("shard b rendered %s, want cm-b1", got)
	}
	if repo, err := repos.Get(ctx, "none", metav1.GetOptions{}); err != nil || repo.Status.Phase != v1alpha1.PhasePending {
		t.Errorf("a GitRepository in no shard: %v %v, want Pending (synced by no one)", repo.Status.Phase, err)
	}
}
