package v1alpha1_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/install"
	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
)

func TestGitRepositoryDefaults(t *testing.T) {
	scheme := runtime.NewScheme()
	install.Install(scheme)

	cases := []struct {
		name string
		in   v1alpha1.GitRepositorySpec
		want v1alpha1.GitRepositorySpec
	}{
		{
			name: "empty spec gets branch, interval, timeout and prune",
			in:   v1alpha1.GitRepositorySpec{URL: "https://example.com/r.git"},
			want: v1alpha1.GitRepositorySpec{URL: "https://example.com/r.git", Branch: "main", Interval: "5m", Timeout: "1m", Prune: ptr.To(true)},
		},
		{
			name: "a pinned tag gets no branch",
			in:   v1alpha1.GitRepositorySpec{Tag: "v1"},
			want: v1alpha1.GitRepositorySpec{Tag: "v1", Interval: "5m", Timeout: "1m", Prune: ptr.To(true)},
		},
		{
			name: "a pinned commit gets no branch",
			in:   v1alpha1.GitRepositorySpec{Commit: "0123456789abcdef0123456789abcdef01234567"},
			want: v1alpha1.GitRepositorySpec{Commit: "0123456789abcdef0123456789abcdef01234567", Interval: "5m", Timeout: "1m", Prune: ptr.To(true)},
		},
		{
			name: "values given are kept, prune false included",
			in:   v1alpha1.GitRepositorySpec{Branch: "dev", Interval: "30s", Timeout: "10s", Prune: ptr.To(false)},
			want: v1alpha1.GitRepositorySpec{Branch: "dev", Interval: "30s", Timeout: "10s", Prune: ptr.To(false)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			repo := &v1alpha1.GitRepository{Spec: tc.in}
			scheme.Default(repo)
			got := repo.Spec
			if got.Branch != tc.want.Branch || got.Tag != tc.want.Tag || got.Commit != tc.want.Commit ||
				got.Interval != tc.want.Interval || got.Timeout != tc.want.Timeout || *got.Prune != *tc.want.Prune {
				t.Fatalf("defaulted spec = %+v (prune %v), want %+v (prune %v)", got, *got.Prune, tc.want, *tc.want.Prune)
			}
		})
	}
}

func TestSyncRequestDefaults(t *testing.T) {
	scheme := runtime.NewScheme()
	install.Install(scheme)

	waiting := &v1alpha1.GitRepositorySyncRequest{Spec: v1alpha1.GitRepositorySyncRequestSpec{Wait: true}}
	scheme.Default(waiting)
	if waiting.Spec.TimeoutSeconds == nil || *waiting.Spec.TimeoutSeconds != v1alpha1.DefaultSyncWaitSeconds {
		t.Fatalf("a waiting request should default timeoutSeconds to %d, got %v", v1alpha1.DefaultSyncWaitSeconds, waiting.Spec.TimeoutSeconds)
	}
	fireAndForget := &v1alpha1.GitRepositorySyncRequest{}
	scheme.Default(fireAndForget)
	if fireAndForget.Spec.TimeoutSeconds != nil {
		t.Fatalf("a request that does not wait needs no timeout, got %d", *fireAndForget.Spec.TimeoutSeconds)
	}
}
