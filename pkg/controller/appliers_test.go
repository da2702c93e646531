package controller

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// TestDefaultServiceAccountStandsIn: with --default-service-account, a
// GitRepository without serviceAccountName applies as that account of its
// own namespace, never as the controller. A loopback server records whom
// each request impersonates (a mock API server: only the headers matter).
func TestDefaultServiceAccountStandsIn(t *testing.T) {
	var mu sync.Mutex
	var impersonated string
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		impersonated = r.Header.Get("Impersonate-User")
		mu.Unlock()
		http.NotFound(w, r)
	}))
	defer server.Close()
	configMaps := schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

	cases := []struct {
		defaultAccount, serviceAccount, want string
	}{
		{defaultAccount: "", serviceAccount: "", want: ""},
		{defaultAccount: "", serviceAccount: "deployer", want: "system:serviceaccount:team:deployer"},
		{defaultAccount: "gitops", serviceAccount: "", want: "system:serviceaccount:team:gitops"},
		{defaultAccount: "gitops", serviceAccount: "deployer", want: "system:serviceaccount:team:deployer"},
	}
	for _, tc := range cases {
		a, err := newAppliers(&rest.Config{Host: server.URL}, tc.defaultAccount)
		if err != nil {
			t.Fatal(err)
		}
		applier, err := a.For("team", tc.serviceAccount)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = applier.Client.Resource(configMaps).Namespace("team").Get(context.Background(), "any", metav1.GetOptions{})
		mu.Lock()
		got := impersonated
		mu.Unlock()
		if got != tc.want {
			t.Errorf("default %q, serviceAccountName %q: the request impersonated %q, want %q",
				tc.defaultAccount, tc.serviceAccount, got, tc.want)
		}
	}
}
