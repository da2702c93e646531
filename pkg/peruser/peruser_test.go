package peruser

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/authentication/user"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
)

func as(name string, groups ...string) context.Context {
	return genericapirequest.WithUser(context.Background(), &user.DefaultInfo{Name: name, Groups: groups})
}

// TestOneNamespacesServiceAccountsShareALimit: a user is capped by name, the
// ServiceAccounts of a namespace together, and a release frees a slot.
func TestOneNamespacesServiceAccountsShareALimit(t *testing.T) {
	l := New(2, 1, "watches", "stop one first")
	var releases []func()
	for _, name := range []string{"system:serviceaccount:team:a", "system:serviceaccount:team:b", "alice", "alice",
		"system:serviceaccount:other:a"} {
		release, err := l.Acquire(as(name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		releases = append(releases, release)
	}
	_, err := l.Acquire(as("system:serviceaccount:team:c"))
	if !apierrors.IsTooManyRequests(err) ||
		!strings.Contains(err.Error(), `the ServiceAccounts of namespace "team" already have 2 watches, the most allowed; stop one first`) {
		t.Errorf("a third ServiceAccount of team: %v", err)
	}
	if _, err := l.Acquire(as("alice")); !apierrors.IsTooManyRequests(err) || !strings.Contains(err.Error(), `user "alice" already has 2 watches`) {
		t.Errorf("alice's third: %v", err)
	}
	releases[0]()
	if _, err := l.Acquire(as("system:serviceaccount:team:c")); err != nil {
		t.Errorf("after team:a's ended: %v", err)
	}
}

// TestOnlyWatchesOfOthersThanAdminsCount: a watch over the limit is a 429
// Status that never reaches the API, and an ended watch frees its slot;
// gets and lists pass, and so do the watches of system:masters (alumiini's
// own loopback client) and of exempt users, however many they hold.
func TestOnlyWatchesOfOthersThanAdminsCount(t *testing.T) {
	limit := New(1, 10, "watches", "stop one first")
	limit.Exempt("system:serviceaccount:alumiini-system:alumiini")
	scheme := runtime.NewScheme()
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"}) // Status, as in the server's scheme
	reached := 0
	handler := LimitWatches(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached++ }), limit,
		serializer.NewCodecFactory(scheme))
	serve := func(ctx context.Context, verb string) *httptest.ResponseRecorder {
		ctx = genericapirequest.WithRequestInfo(ctx, &genericapirequest.RequestInfo{IsResourceRequest: true, Verb: verb,
			APIGroup: "alumiini.false.systems", APIVersion: "v1alpha1", Resource: "gitrepositories"})
		recorder := httptest.NewRecorder()
		handler.ServeHTTP(recorder, httptest.NewRequest(http.MethodGet, "/apis/alumiini.false.systems/v1alpha1/gitrepositories", nil).WithContext(ctx))
		return recorder
	}
	admin, own := as("system:apiserver", user.SystemPrivilegedGroup), as("system:serviceaccount:alumiini-system:alumiini")
	for _, ctx := range []context.Context{as("bob"), admin, own} { // each already holds its one watch
		if _, err := limit.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := serve(as("bob"), "watch"); got.Code != http.StatusTooManyRequests || got.Header().Get("Retry-After") != "10" ||
		!strings.Contains(got.Body.String(), `user \"bob\" already has 1 watches, the most allowed; stop one first`) || reached != 0 {
		t.Errorf("bob's second watch: %d %v %s, reached the API %d times", got.Code, got.Header(), got.Body, reached)
	}
	for _, c := range []struct {
		who  string
		ctx  context.Context
		verb string
	}{
		{"bob", as("bob"), "list"}, {"bob", as("bob"), "get"}, {"system:masters", admin, "watch"},
		{"exempt", own, "watch"}, {"carol", as("carol"), "watch"}, {"carol again, her first ended", as("carol"), "watch"},
	} {
		reached = 0
		if got := serve(c.ctx, c.verb); got.Code != http.StatusOK || reached != 1 {
			t.Errorf("%s %s: %d %s, reached the API %d times", c.who, c.verb, got.Code, got.Body, reached)
		}
	}
}
