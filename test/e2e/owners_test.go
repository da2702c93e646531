package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/gitserver"
)

// TestTheGarbageCollectorMayOrphanAndDeleteAnAdminsGitRepository: an admin's
// GitRepository (applying as alumiini) owned by a ConfigMap. Deleting the
// owner orphaning its dependents has kube-controller-manager's garbage
// collector take the owner reference off, which only escalators may change
// on such a GitRepository; and deleting the owner in the background has it
// delete the GitRepository, which prunes as alumiini, which only escalators
// may either. Refused, the collector retried for ever and an orphaning
// owner stayed Terminating. This suite's kube-controller-manager runs as
// system:masters, which passes anyway (and whose collector learns of
// GitRepositories only at its next resync), so the collector's requests
// are made through kube-apiserver impersonating the identity it has with
// --use-service-account-credentials (kubeadm's default).
func TestTheGarbageCollectorMayOrphanAndDeleteAnAdminsGitRepository(t *testing.T) {
	const namespace = "owned"
	const collector = "system:serviceaccount:kube-system:generic-garbage-collector"
	createNamespace(t, namespace)
	pushRepository(t, namespace, map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	owner := func(name string) string {
		kubectlInput(t, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: "+name+"\n  namespace: "+namespace+"\n", "apply", "-f", "-")
		uid := kubectl(t, "get", "configmap", name, "-n", namespace, "-o", "jsonpath={.metadata.uid}")
		return "  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: " + name + ", uid: " + uid + "}]\n"
	}
	withOwner := func(ownerReferences string) string {
		return strings.Replace(gitRepository("owned", namespace, namespace, ""), "  name: owned\n", "  name: owned\n"+ownerReferences, 1)
	}
	owners := func() string {
		return kubectl(t, "get", "gitrepository", "owned", "-n", namespace, "-o", "jsonpath={.metadata.ownerReferences[*].name}")
	}
	kubectlInput(t, withOwner(owner("first-owner")), "apply", "-n", namespace, "-f", "-")

	// As the collector's identity: adding an owner is refused, taking one
	// off (orphaning) is not.
	asCollector := func(args ...string) []string { return append(args, "-n", namespace, "--as", collector) }
	stderr := kubectlFails(t, "", asCollector("patch", "gitrepository", "owned", "--type=json", "-p",
		`[{"op":"add","path":"/metadata/ownerReferences/-","value":{"apiVersion":"v1","kind":"ConfigMap","name":"other","uid":"0"}}]`)...)
	if !strings.Contains(stderr, "metadata.ownerReferences") {
		t.Errorf("the collector's identity adding an owner: %s; want it refused", stderr)
	}
	kubectl(t, asCollector("patch", "gitrepository", "owned", "--type=json", "-p", `[{"op":"remove","path":"/metadata/ownerReferences/0"}]`)...)
	if left := owners(); left != "" {
		t.Fatalf("owners after the collector's orphaning: %q", left)
	}

	// Its owner gone, the collector deletes it: it prunes as alumiini.
	kubectlInput(t, withOwner(owner("second-owner")), "apply", "-n", namespace, "-f", "-")
	kubectl(t, asCollector("delete", "gitrepository", "owned", "--wait=false")...)
	eventually(t, 60*time.Second, func() string {
		if left := kubectl(t, "get", "gitrepositories", "-n", namespace, "--ignore-not-found", "-o", "name"); left != "" {
			return "still there: " + left
		}
		return ""
	})
}
