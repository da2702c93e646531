package controller

import (
	"context"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/git"
	"github.com/falsesystems/alumiini/test/gitserver"
)

// TestASyncRequestSeesAPushMadeWhileAPollListed: a poll's ref listing got
// its answer from the server before a push, and the answer is still on its
// way when a sync request, made after the push, asks for the latest commit.
// The request must not be answered by that listing (it once joined it, and
// synced the commit before the push). A real git server (git http-backend)
// behind a proxy that holds the first listing's answer. This is the
// controller's side (it asks the cache for a listing after now); the
// sleep lets the request reach the cache first, and pkg/git's
// TestOverlappingSyncRequestsShareTheListingAfterTheRunningOne pins the
// cache's side down without one.
func TestASyncRequestSeesAPushMadeWhileAPollListed(t *testing.T) {
	server, err := gitserver.Start(t.TempDir(), "127.0.0.1:0", gitserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(server.Close)
	ctx := context.Background()
	files := map[string]gitserver.File{"deploy/cm.yaml": {Content: "kind: ConfigMap\n"}}
	before, err := server.Commit(ctx, "app", "main", files)
	if err != nil {
		t.Fatal(err)
	}
	held := server.HoldFirstListing()
	t.Cleanup(held.Close)

	cache, err := git.NewCache(git.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Git: cache}
	src := git.Source{URL: held.URL + "/app.git", Branch: "main", Tenant: "team"}
	polled := make(chan string, 1)
	go func() {
		commit, _ := r.latest(ctx, nil, nil, src)
		polled <- commit
	}()
	<-held.Answered()
	files["deploy/new.yaml"] = gitserver.File{Content: "kind: Secret\n"}
	pushed, err := server.Commit(ctx, "app", "main", files)
	if err != nil {
		t.Fatal(err)
	}
	requested := make(chan string, 1)
	go func() {
		commit, err := r.latest(ctx, &v1alpha1.SyncRequestRecord{ID: "after-the-push"}, nil, src)
		if err != nil {
			t.Error(err)
		}
		requested <- commit
	}()
	time.Sleep(200 * time.Millisecond) // the request reaches the cache while the poll's listing is held
	held.Release()
	if got := <-polled; got != before {
		t.Errorf("the poll that listed before the push saw %s, want %s", got, before)
	}
	if got := <-requested; got != pushed {
		t.Errorf("the sync request made after the push synced %s, want the pushed %s", got, pushed)
	}
}
