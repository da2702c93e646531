package controller

import (
	"testing"

	"k8s.io/client-go/rest"
)

// TestDefaultServiceAccountStandsIn: with --default-service-account, a
// GitRepository without serviceAccountName applies as that account of its
// own namespace, never as the controller.
func TestDefaultServiceAccountStandsIn(t *testing.T) {
	config := &rest.Config{Host: "https://127.0.0.1:1"} // never dialled: building clients does not connect
	cases := []struct {
		defaultAccount, serviceAccount, want string
	}{
		{defaultAccount: "", serviceAccount: "", want: ""},
		{defaultAccount: "", serviceAccount: "deployer", want: "system:serviceaccount:team:deployer"},
		{defaultAccount: "gitops", serviceAccount: "", want: "system:serviceaccount:team:gitops"},
		{defaultAccount: "gitops", serviceAccount: "deployer", want: "system:serviceaccount:team:deployer"},
	}
	for _, tc := range cases {
		a, err := newAppliers(config, tc.defaultAccount)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.For("team", tc.serviceAccount); err != nil {
			t.Fatal(err)
		}
		if _, ok := a.byUser[tc.want]; !ok || len(a.byUser) != 1 {
			t.Errorf("default %q, serviceAccountName %q: appliers for %v, want one for %q",
				tc.defaultAccount, tc.serviceAccount, keys(a.byUser), tc.want)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
