package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	clientset "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned"
	"github.com/falsesystems/alumiini/test/gitserver"
)

// TestWatchesPerRequesterAreCapped: through kube-apiserver, a requester
// holds at most 100 watches of GitRepositories (each costs alumiini about
// 105 KB); the ServiceAccounts of one namespace count as one requester, so
// making more of them gains nothing. The 101st is refused with 429 saying
// why, another user is not affected, alumiini's own identity is not
// counted, and a watch that ends frees its slot.
func TestWatchesPerRequesterAreCapped(t *testing.T) {
	const namespace = "watch-cap"
	createNamespace(t, namespace)
	kubectlInput(t, `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: watch-gitrepositories, namespace: `+namespace+`}
rules:
- apiGroups: [alumiini.false.systems]
  resources: [gitrepositories]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: watch-gitrepositories, namespace: `+namespace+`}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: watch-gitrepositories}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:serviceaccounts:`+namespace+`"}
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: someone-else}
`, "apply", "-f", "-")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchAs := func(user string) (watch.Interface, error) {
		config, err := cluster.RESTConfig()
		if err != nil {
			t.Fatal(err)
		}
		config.Impersonate = rest.ImpersonationConfig{UserName: user}
		config.QPS, config.Burst = 1000, 1000
		// Once: client-go would retry a 429 after its Retry-After.
		var list metav1.ListOptions
		return clientset.NewForConfigOrDie(config).AlumiiniV1alpha1().RESTClient().Get().Namespace(namespace).
			Resource("gitrepositories").VersionedParams(&list, metav1.ParameterCodec).Param("watch", "true").
			MaxRetries(0).Watch(ctx)
	}
	a, b := "system:serviceaccount:"+namespace+":a", "system:serviceaccount:"+namespace+":b"
	var held []watch.Interface
	for i := range 100 {
		who := a
		if i >= 60 {
			who = b
		}
		w, err := watchAs(who)
		if err != nil {
			t.Fatalf("watch %d of %s: %v", i+1, who, err)
		}
		held = append(held, w)
	}
	defer func() {
		for _, w := range held {
			w.Stop()
		}
	}()
	_, err := watchAs(b)
	if !apierrors.IsTooManyRequests(err) ||
		!strings.Contains(err.Error(), `the ServiceAccounts of namespace "`+namespace+`" already have 100 watches`) {
		t.Fatalf("the 101st watch of the namespace's ServiceAccounts: %v, want 429 saying why", err)
	}
	if w, err := watchAs("someone-else"); err != nil {
		t.Errorf("another user's watch: %v", err)
	} else {
		w.Stop()
	}
	healthWaitSaysItsWatchIsRefused(t, namespace) // while the namespace's 100 watches are held
	// alumiini's own identity (learned from kube-apiserver at start) is not
	// counted: its health waits watch the GitRepositories it applied.
	const own = "system:serviceaccount:alumiini-system:alumiini"
	for i := range 101 {
		w, err := watchAs(own)
		if err != nil {
			t.Fatalf("watch %d as alumiini's own identity: %v", i+1, err)
		}
		held = append(held, w)
	}
	held[0].Stop()
	held = held[1:]
	eventually(t, 10*time.Second, func() string {
		w, err := watchAs(b)
		if err != nil {
			return err.Error()
		}
		held = append(held, w)
		return ""
	})
}

// healthWaitSaysItsWatchIsRefused: a health wait applying as one of
// namespace's ServiceAccounts, whose watches are at the cap, times out naming
// the refused watch, not "not found" (client-go retries a refused watch
// without reporting it).
func healthWaitSaysItsWatchIsRefused(t *testing.T, namespace string) {
	t.Helper()
	kubectlInput(t, "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: deployer\n  namespace: "+namespace+"\n", "apply", "-f", "-")
	grantConfigMaps(t, namespace, namespace, "deployer")
	pushRepository(t, namespace, map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	const checks = "  healthChecks: [{apiVersion: alumiini.false.systems/v1alpha1, kind: GitRepository, name: elsewhere}]\n"
	kubectlInput(t, gitRepository("refused", namespace, namespace,
		"  serviceAccountName: deployer\n  wait: true\n  healthTimeout: 4s\n"+checks), "apply", "-n", namespace, "-f", "-")
	defer kubectl(t, "delete", "gitrepository", "refused", "-n", namespace, "--timeout=60s")
	message := ""
	eventually(t, 60*time.Second, func() string {
		message = kubectl(t, "get", "gitrepository", "refused", "-n", namespace, "-o",
			`jsonpath={.status.conditions[?(@.type=="Healthy")].reason}: {.status.conditions[?(@.type=="Healthy")].message}`)
		if !strings.HasPrefix(message, "HealthTimeout") {
			return "Healthy: " + message
		}
		return ""
	})
	if !strings.Contains(message, "GitRepository "+namespace+"/elsewhere: cannot watch") || !strings.Contains(message, "already have 100 watches") {
		t.Errorf("a wait whose watch is refused: %q, want it to name the refused watch", message)
	}
	t.Logf("a wait whose watch is refused ends: %s", message)
}
