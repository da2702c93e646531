package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/test/gitserver"
)

// The tests here act as a hostile tenant would: user "alice" may edit
// GitRepositories in her namespace (the shipped alumiini:edit role, bound
// there) and nothing else. Every request goes through the real
// kube-apiserver with RBAC, impersonated with kubectl --as.

const tenantRBAC = `apiVersion: v1
kind: Namespace
metadata:
  name: tenant-a
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: alice-edits-gitrepositories
  namespace: tenant-a
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: alumiini:edit
subjects:
- kind: User
  name: alice
  apiGroup: rbac.authorization.k8s.io
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: deployer
  namespace: tenant-a
`

func asAlice(args ...string) []string {
	return append([]string{"--as", "alice", "--namespace", "tenant-a"}, args...)
}

func setUpTenant(t *testing.T) {
	t.Helper()
	kubectlInput(t, tenantRBAC, "apply", "-f", "-")
	grantConfigMaps(t, "tenant-a", "tenant-a", "deployer")
}

// grantConfigMaps lets ServiceAccount saNamespace/sa manage ConfigMaps in
// namespace. (A Role of its own: the local control plane has no
// controller-manager to fill the aggregated edit role.)
func grantConfigMaps(t *testing.T, namespace, saNamespace, sa string) {
	t.Helper()
	kubectlInput(t, `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: configmaps
  namespace: `+namespace+`
rules:
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: `+sa+`-configmaps
  namespace: `+namespace+`
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: configmaps}
subjects: [{kind: ServiceAccount, name: `+sa+`, namespace: `+saNamespace+`}]
`, "apply", "-f", "-")
}

// waitForPhase waits until the GitRepository reaches phase and returns its message.
func waitForPhase(t *testing.T, namespace, name string, phase v1alpha1.GitRepositoryPhase) string {
	t.Helper()
	return waitForPhaseWithin(t, namespace, name, phase, 60*time.Second)
}

func waitForPhaseWithin(t *testing.T, namespace, name string, phase v1alpha1.GitRepositoryPhase, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	got := ""
	for time.Now().Before(deadline) {
		got = kubectl(t, "get", "gitrepository", name, "-n", namespace, "-o", "jsonpath={.status.phase}")
		if got == string(phase) {
			return kubectl(t, "get", "gitrepository", name, "-n", namespace, "-o", "jsonpath={.status.message}")
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("gitrepository %s/%s is %q after %s, want %s", namespace, name, got, within, phase)
	return ""
}

func TestATenantCannotUseTheControllersIdentity(t *testing.T) {
	setUpTenant(t)
	pushRepository(t, "takeover", map[string]gitserver.File{
		"deploy/crb.yaml": {Content: `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: alice-is-admin-now
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]
`},
		"deploy/cm.yaml": {Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: planted\n  namespace: kube-system\n"},
		"deploy/ok.yaml": {Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: allowed\n"},
	})

	// Without serviceAccountName alumiini would apply as itself: refused at
	// kubectl apply, naming the field and the missing permission.
	stderr := kubectlFails(t, gitRepository("takeover", "takeover", "tenant-a", ""), asAlice("apply", "-f", "-")...)
	for _, want := range []string{"spec.serviceAccountName", "escalate", "alice"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the refusal does not mention %q:\n%s", want, stderr)
		}
	}

	// A Role of "*" on "*" in her namespace is still not "escalate": alumiini's
	// identity reaches every namespace, so the grant must be cluster-wide.
	kubectlInput(t, `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: everything, namespace: tenant-a}
rules: [{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: bob-owns-tenant-a, namespace: tenant-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: everything}
subjects: [{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}]
`, "apply", "-f", "-")
	stderr = kubectlFails(t, gitRepository("takeover", "takeover", "tenant-a", ""),
		"--as", "bob", "--namespace", "tenant-a", "apply", "-f", "-")
	if !strings.Contains(stderr, "spec.serviceAccountName") {
		t.Errorf("a namespace owner without cluster-wide escalate: %s", stderr)
	}

	// Naming a Secret she may not read would send its credentials to a URL
	// of her choosing.
	stderr = kubectlFails(t, strings.Replace(gitRepository("exfiltrate", "x", "tenant-a", "  serviceAccountName: deployer\n  secretRef:\n    name: team-registry\n"),
		"url: "+cluster.Git.BaseURL()+"/x.git", "url: https://127.0.0.1:1/x.git", 1), asAlice("apply", "-f", "-")...)
	if !strings.Contains(stderr, "spec.secretRef.name") || !strings.Contains(stderr, "team-registry") {
		t.Errorf("naming a Secret she may not read: %s", stderr)
	}

	// With a ServiceAccount, RBAC bounds the sync as it bounds that account:
	// the cluster-scoped binding and the object in kube-system are refused,
	// and nothing at all is applied.
	kubectlInput(t, gitRepository("takeover", "takeover", "tenant-a", "  serviceAccountName: deployer\n"), asAlice("apply", "-f", "-")...)
	message := waitForPhase(t, "tenant-a", "takeover", v1alpha1.PhaseFailed)
	if !strings.Contains(message, "forbidden") || !strings.Contains(message, "system:serviceaccount:tenant-a:deployer") {
		t.Errorf("the failure does not say the ServiceAccount may not do it: %s", message)
	}
	if _, err := cluster.Kubectl(context.Background(), "get", "clusterrolebinding", "alice-is-admin-now"); err == nil {
		t.Fatal("a tenant's repository created a ClusterRoleBinding to cluster-admin")
	}
	if _, err := cluster.Kubectl(context.Background(), "get", "configmap", "planted", "-n", "kube-system"); err == nil {
		t.Fatal("a tenant's repository wrote into kube-system")
	}
	if _, err := cluster.Kubectl(context.Background(), "get", "configmap", "allowed", "-n", "tenant-a"); err == nil {
		t.Error("part of a refused commit was applied")
	}

	// She may not clear the ServiceAccount afterwards either.
	stderr = kubectlFails(t, "", asAlice("patch", "gitrepository", "takeover", "--type=merge", "-p", `{"spec":{"serviceAccountName":null}}`)...)
	if !strings.Contains(stderr, "spec.serviceAccountName") {
		t.Errorf("clearing serviceAccountName: %s", stderr)
	}
	kubectl(t, "delete", "gitrepository", "takeover", "-n", "tenant-a", "--timeout=60s")
}

func TestATenantCannotRepointAnAdminsGitRepository(t *testing.T) {
	setUpTenant(t)
	pushRepository(t, "platform", map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	// The cluster admin may leave serviceAccountName empty.
	kubectlInput(t, gitRepository("platform", "platform", "tenant-a", ""), "apply", "-n", "tenant-a", "-f", "-")
	waitForPhase(t, "tenant-a", "platform", v1alpha1.PhaseSynced)

	// Alice can edit GitRepositories in tenant-a, but not point this one,
	// which applies as alumiini, somewhere else, not even by naming a
	// ServiceAccount of hers, nor take away the finalizer that prunes as it
	// is deleted.
	for patch, field := range map[string]string{
		`{"spec":{"url":"https://evil.example.com/cluster-admin.git"}}`:                          "spec.serviceAccountName",
		`{"spec":{"path":"other"}}`:                                                              "spec.serviceAccountName",
		`{"spec":{"serviceAccountName":"deployer","url":"https://evil.example.com/theirs.git"}}`: "spec.serviceAccountName",
		`{"metadata":{"finalizers":null}}`:                                                       "metadata.finalizers",
	} {
		stderr := kubectlFails(t, "", asAlice("patch", "gitrepository", "platform", "--type=merge", "-p", patch)...)
		if !strings.Contains(stderr, field) {
			t.Errorf("patch %s: %s; want it refused naming %s", patch, stderr, field)
		}
	}
	// Suspending only stops it: allowed.
	kubectl(t, asAlice("patch", "gitrepository", "platform", "--type=merge", "-p", `{"spec":{"suspend":true}}`)...)
	// Denying break-glass now keeps her suspension, which only an escalator
	// may then end: the admin denying it is warned, and she may not resume.
	stderr := kubectlFails(t, "", "patch", "gitrepository", "platform", "-n", "tenant-a", "--warnings-as-errors",
		"--type=merge", "-p", `{"spec":{"drift":{"allowBreakGlass":false}}}`)
	if !strings.Contains(stderr, "spec.suspend is still true") {
		t.Errorf("denying break-glass of a suspended GitRepository: %s; want a warning that it stays suspended", stderr)
	}
	stderr = kubectlFails(t, "", asAlice("patch", "gitrepository", "platform", "--type=merge", "-p", `{"spec":{"suspend":false}}`)...)
	if !strings.Contains(stderr, "spec.suspend") {
		t.Errorf("resuming it as the tenant: %s; want it refused naming spec.suspend", stderr)
	}
	kubectl(t, "patch", "gitrepository", "platform", "-n", "tenant-a", "--type=merge", "-p", `{"spec":{"drift":null}}`)

	// A plain sync request is hers to make. One that picks a revision or
	// forces a recreate changes what runs, as a spec edit does: she may
	// update GitRepositories here, but this one applies as alumiini.
	kubectl(t, "patch", "gitrepository", "platform", "-n", "tenant-a", "--type=merge", "-p", `{"spec":{"suspend":false}}`)
	kubectlInput(t, `{"spec":{}}`, asAlice("create", "--raw", syncPathIn("tenant-a", "platform"), "-f", "-")...)
	for _, body := range []string{`{"spec":{"revision":"unreviewed"}}`, `{"spec":{"force":true}}`} {
		stderr := kubectlFails(t, body, asAlice("create", "--raw", syncPathIn("tenant-a", "platform"), "-f", "-")...)
		if !strings.Contains(stderr, "escalate") {
			t.Errorf("sync %s: %s", body, stderr)
		}
	}
	// A bot that may only ask for syncs may not pick a revision, even of a
	// GitRepository confined to a ServiceAccount.
	kubectlInput(t, `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: sync-only
  namespace: tenant-a
rules:
- apiGroups: ["alumiini.false.systems"]
  resources: ["gitrepositories/sync"]
  verbs: ["create"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: ci-bot-syncs
  namespace: tenant-a
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: sync-only}
subjects: [{kind: User, name: ci-bot, apiGroup: rbac.authorization.k8s.io}]
`, "apply", "-f", "-")
	kubectlInput(t, gitRepository("confined", "platform", "tenant-a", "  serviceAccountName: deployer\n"), asAlice("apply", "-f", "-")...)
	bot := []string{"--as", "ci-bot", "--namespace", "tenant-a", "create", "--raw", syncPathIn("tenant-a", "confined"), "-f", "-"}
	kubectlInput(t, `{"spec":{}}`, bot...)
	stderr = kubectlFails(t, `{"spec":{"revision":"unreviewed"}}`, bot...)
	if !strings.Contains(stderr, "update") {
		t.Errorf("a sync-only user picked a revision: %s", stderr)
	}
	// Alice, who may edit "confined", may pick its revision.
	kubectlInput(t, `{"spec":{"revision":"main"}}`, asAlice("create", "--raw", syncPathIn("tenant-a", "confined"), "-f", "-")...)
	kubectl(t, "delete", "gitrepository", "confined", "-n", "tenant-a", "--timeout=60s")

	// Deleting "platform" would prune what it applied, as alumiini: not hers.
	stderr = kubectlFails(t, "", asAlice("delete", "gitrepository", "platform", "--wait=false")...)
	if !strings.Contains(stderr, "escalate") {
		t.Errorf("a tenant deleting an admin's GitRepository: %s", stderr)
	}
	kubectl(t, "delete", "gitrepository", "platform", "-n", "tenant-a", "--timeout=60s")
}

func TestNoAdoptionOfOthersObjects(t *testing.T) {
	createNamespace(t, "owners")
	pushRepository(t, "owner-a", map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	pushRepository(t, "owner-b", map[string]gitserver.File{
		"deploy/cm.yaml": {Content: strings.Replace(configMapV1, `"1"`, `"hijacked"`, 1)},
	})
	kubectlInput(t, gitRepository("owner-a", "owner-a", "owners", ""), "apply", "-n", "owners", "-f", "-")
	waitForPhase(t, "owners", "owner-a", v1alpha1.PhaseSynced)

	// Another GitRepository declaring the same ConfigMap fails, naming both,
	// with or without adopt.
	kubectlInput(t, gitRepository("owner-b", "owner-b", "owners", "  adopt: true\n"), "apply", "-n", "owners", "-f", "-")
	message := waitForPhase(t, "owners", "owner-b", v1alpha1.PhaseFailed)
	if !strings.Contains(message, "owners/owner-a") || !strings.Contains(message, "owners/owner-b") {
		t.Errorf("the conflict does not name both GitRepositories: %s", message)
	}
	if got := kubectl(t, "get", "configmap", "settings", "-n", "owners", "-o", "jsonpath={.data.version}"); got != "1" {
		t.Errorf("the other GitRepository changed the ConfigMap: version %q", got)
	}
	// Deleting it prunes nothing of owner-a's.
	kubectl(t, "delete", "gitrepository", "owner-b", "-n", "owners", "--timeout=60s")
	if _, err := cluster.Kubectl(context.Background(), "get", "configmap", "settings", "-n", "owners"); err != nil {
		t.Fatalf("deleting a GitRepository deleted an object it never owned: %v", err)
	}

	// An object nobody manages is refused until adopt is set.
	kubectlInput(t, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: by-hand\n  namespace: owners\ndata:\n  a: b\n", "apply", "-f", "-")
	pushRepository(t, "adopter", map[string]gitserver.File{
		"deploy/cm.yaml": {Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: by-hand\ndata:\n  a: from-git\n"},
	})
	kubectlInput(t, gitRepository("adopter", "adopter", "owners", ""), "apply", "-n", "owners", "-f", "-")
	message = waitForPhase(t, "owners", "adopter", v1alpha1.PhaseFailed)
	if !strings.Contains(message, "spec.adopt") {
		t.Errorf("the refusal does not say how to adopt: %s", message)
	}
	kubectl(t, "patch", "gitrepository", "adopter", "-n", "owners", "--type=merge", "-p", `{"spec":{"adopt":true}}`)
	waitForPhase(t, "owners", "adopter", v1alpha1.PhaseSynced)
	if got := kubectl(t, "get", "configmap", "by-hand", "-n", "owners", "-o", "jsonpath={.data.a}"); got != "from-git" {
		t.Errorf("after adopting, the ConfigMap holds %q", got)
	}
	kubectl(t, "delete", "gitrepository", "adopter", "-n", "owners", "--timeout=60s")
	kubectl(t, "delete", "gitrepository", "owner-a", "-n", "owners", "--timeout=60s")
}

func TestCredentialsAreNeverSentOverPlainHTTP(t *testing.T) {
	stderr := kubectlFails(t, gitRepository("plaintext", "plaintext", "default", "  secretRef:\n    name: creds\n"), "apply", "-f", "-")
	if !strings.Contains(stderr, "spec.secretRef") || !strings.Contains(stderr, "https://") {
		t.Errorf("a secretRef with an http:// URL: %s", stderr)
	}
}

// TestResourceQuotaCountsGitRepositories: each GitRepository costs a worker,
// ref listings and storage in the process every tenant shares, so a cluster
// admin bounds them with an ordinary ResourceQuota.
func TestResourceQuotaCountsGitRepositories(t *testing.T) {
	createNamespace(t, "quota")
	const counted = "count/gitrepositories.alumiini.false.systems"
	kubectlInput(t, "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: gitrepositories\n  namespace: quota\nspec:\n  hard:\n    "+
		counted+": \"1\"\n", "apply", "-f", "-")
	// The local control plane has no kube-controller-manager, whose quota
	// controller would fill in the quota's status; do it by hand.
	kubectl(t, "patch", "resourcequota", "gitrepositories", "-n", "quota", "--subresource=status", "--type=merge",
		"-p", `{"status":{"hard":{"`+counted+`":"1"},"used":{"`+counted+`":"0"}}}`)
	pushRepository(t, "quota", map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	deadline := time.Now().Add(30 * time.Second)
	for {
		// The quota reaches alumiini through an informer: retry until it is seen.
		kubectlInput(t, gitRepository("first", "quota", "quota", "  suspend: true\n"), "apply", "-n", "quota", "-f", "-")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := cluster.KubectlInput(ctx, gitRepository("second", "quota", "quota", "  suspend: true\n"), "apply", "-n", "quota", "-f", "-")
		cancel()
		if err != nil {
			if !strings.Contains(err.Error(), "exceeded quota") {
				t.Fatalf("the second GitRepository: %v, want exceeded quota", err)
			}
			break
		}
		kubectl(t, "delete", "gitrepository", "second", "-n", "quota")
		if time.Now().After(deadline) {
			t.Fatal("a second GitRepository was created past a quota of 1")
		}
		time.Sleep(time.Second)
	}
	if used := kubectl(t, "get", "resourcequota", "gitrepositories", "-n", "quota", "-o", `jsonpath={.status.used.count/gitrepositories\.alumiini\.false\.systems}`); used != "1" {
		t.Errorf("the quota's usage is %q, want 1", used)
	}
	kubectl(t, "delete", "gitrepository", "first", "-n", "quota")
}
