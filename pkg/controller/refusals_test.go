package controller

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// A 429 is told to the request's note with the server's message, and
// client-go still reads the whole body, past what the note read too;
// requests without a note, and answers other than 429, are left alone.
func TestRefusalsAreToldToTheRequestsNote(t *testing.T) {
	const status = `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too many watches: at most 100","reason":"TooManyRequests","code":429}`
	long := `{"kind":"Status","message":"` + strings.Repeat("x", 3*maxRefusalBytes) + `","code":429}`
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fine" {
			return
		}
		w.Header().Set("Retry-After", "10")
		w.WriteHeader(http.StatusTooManyRequests)
		if r.URL.Path == "/long" {
			_, _ = io.WriteString(w, long)
			return
		}
		_, _ = io.WriteString(w, status)
	}))
	defer server.Close()
	client := &http.Client{Transport: notingRefusals(http.DefaultTransport)}
	get := func(ctx context.Context, path string) string {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, server.URL+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	var heard []string
	ctx := withRefusalNote(context.Background(), func(err error) { heard = append(heard, err.Error()) })
	if body := get(ctx, "/refused"); body != status {
		t.Errorf("the body client-go reads: %q, want the whole Status", body)
	}
	get(ctx, "/fine")
	get(context.Background(), "/refused")
	if len(heard) != 1 || !strings.Contains(heard[0], "429") || !strings.Contains(heard[0], "too many watches: at most 100") {
		t.Errorf("heard %q, want the one refusal with the server's message", heard)
	}
	if body := get(ctx, "/long"); body != long {
		t.Errorf("client-go read %d bytes of a %d-byte 429, want all", len(body), len(long))
	}
	if len(heard) != 2 || heard[1] != "refused (429 Too Many Requests)" {
		t.Errorf("a 429 whose message is past what is read: heard %q, want a second, bare refusal", heard)
	}
}

// An applier's client tells a health wait's list-watch of a refused watch
// while client-go is still retrying it: the wait's error for that watch
// names the refusal. A loopback server stands in for the API server (only
// the 429 matters).
func TestAWaitHearsItsWatchRefusedThroughTheApplier(t *testing.T) {
	const message = `the ServiceAccounts of namespace "team" already have 100 watches`
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"`+strings.ReplaceAll(message, `"`, `\"`)+`","reason":"TooManyRequests","code":429}`)
	}))
	defer server.Close()
	appliers, err := newAppliers(&rest.Config{Host: server.URL}, "")
	if err != nil {
		t.Fatal(err)
	}
	applier, err := appliers.For("team", "deployer")
	if err != nil {
		t.Fatal(err)
	}
	w := &healthWatch{changed: make(chan struct{}, 1), errors: map[watchScope]string{}}
	scope := watchScope{resource: schema.GroupVersionResource{Group: "alumiini.false.systems", Version: "v1alpha1", Resource: "gitrepositories"},
		namespace: "team", name: "elsewhere"}
	lw := w.listWatch(applier.Client, scope, func(*metav1.ListOptions) {}).(cache.ListerWatcherWithContext)
	if _, err := lw.WatchWithContext(context.Background(), metav1.ListOptions{}); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("the watch: %v, want a 429", err)
	}
	if got := w.errors[scope]; got != "refused (429): "+message {
		t.Errorf("the wait's error for the watch: %q, want the labelled refusal", got)
	}
}
