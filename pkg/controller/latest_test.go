package controller

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
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
	target, _ := url.Parse(server.BaseURL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	var listings atomic.Int32
	answered, release := make(chan struct{}), make(chan struct{})
	proxy.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasSuffix(resp.Request.URL.Path, "/info/refs") || listings.Add(1) != 1 {
			return nil
		}
		body, err := io.ReadAll(resp.Body) // the refs as they were before the push
		resp.Body = io.NopCloser(bytes.NewReader(body))
		close(answered)
		<-release
		return err
	}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)

	cache, err := git.NewCache(git.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Git: cache}
	src := git.Source{URL: front.URL + "/app.git", Branch: "main", Tenant: "team"}
	polled := make(chan string, 1)
	go func() {
		commit, _ := r.latest(ctx, nil, nil, src)
		polled <- commit
	}()
	<-answered
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
	close(release)
	if got := <-polled; got != before {
		t.Errorf("the poll that listed before the push saw %s, want %s", got, before)
	}
	if got := <-requested; got != pushed {
		t.Errorf("the sync request made after the push synced %s, want the pushed %s", got, pushed)
	}
}
