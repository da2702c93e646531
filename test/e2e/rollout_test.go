package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/gitserver"
)

// rolloutCRD is KULTA's Rollout as far as alumiini reads it: the status
// fields of its source (phase, currentStepIndex, currentWeight, message,
// decisions), as a status subresource.
const rolloutCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: rollouts.kulta.io}
spec:
  group: kulta.io
  names: {kind: Rollout, plural: rollouts, singular: rollout}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
`

func rolloutManifest(image string) string {
	return "apiVersion: kulta.io/v1alpha1\nkind: Rollout\nmetadata:\n  name: web\nspec:\n  image: " + image + "\n"
}

// playKulta writes the Rollout's status as KULTA would.
func playKulta(t *testing.T, status string) {
	t.Helper()
	kubectl(t, "patch", "rollout.kulta.io", "web", "-n", "rollout", "--subresource=status", "--type=merge", "-p", `{"status":`+status+`}`)
}

func waitForRolledOut(t *testing.T, wantStatus, wantReason string) {
	t.Helper()
	waitForRolledOutOf(t, "rollout", wantStatus, wantReason)
}

// waitForRolledOutOf waits for GitRepository name's RolledOut condition and
// returns its message.
func waitForRolledOutOf(t *testing.T, name, wantStatus, wantReason string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := kubectl(t, "get", "gitrepository", name, "-o",
			`jsonpath={.status.conditions[?(@.type=="RolledOut")].status}/{.status.conditions[?(@.type=="RolledOut")].reason}/{.status.conditions[?(@.type=="RolledOut")].message}`)
		if strings.HasPrefix(out, wantStatus+"/"+wantReason+"/") {
			return strings.TrimPrefix(out, wantStatus+"/"+wantReason+"/")
		}
		if time.Now().After(deadline) {
			t.Fatalf("RolledOut is %s, want %s/%s\n%s", out, wantStatus, wantReason, kubectl(t, "get", "gitrepository", name, "-o", "yaml"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestRolloutRefFollowsKulta: a GitRepository naming a KULTA Rollout by
// name alone follows it after each apply (the test plays KULTA, writing the
// Rollout's status): progress shows in status.rollout, completion makes
// RolledOut and, with wait, Ready True; a rollback makes them False.
func TestRolloutRefFollowsKulta(t *testing.T) {
	kubectlInput(t, rolloutCRD, "apply", "-f", "-")
	kubectl(t, "wait", "--for=condition=Established", "crd/rollouts.kulta.io", "--timeout=30s")
	createNamespace(t, "rollout")
	pushRepository(t, "rollout", map[string]gitserver.File{"deploy/rollout.yaml": {Content: rolloutManifest("web:1")}})
	kubectlInput(t, gitRepository("rollout", "rollout", "rollout", "  wait: true\n  healthTimeout: 60s\n  rolloutRef: {name: web}\n"),
		"apply", "-f", "-")
	waitForRolledOut(t, "Unknown", "RolloutProgressing")

	playKulta(t, `{"phase":"Progressing","currentStepIndex":1,"currentWeight":20,"message":"canary at 20%"}`)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := kubectl(t, "get", "gitrepository", "rollout", "-o", "jsonpath={.status.rollout.phase} {.status.rollout.step} {.status.rollout.weight}")
		if got == "Progressing 1 20" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status.rollout shows %q, want the canary's progress", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if reason, _ := readyReason(t, "rollout"); reason != "HealthCheckPending" {
		t.Errorf("Ready's reason while the Rollout progresses is %q", reason)
	}

	playKulta(t, `{"phase":"Completed","currentStepIndex":3,"currentWeight":100,"message":"done"}`)
	waitForRolledOut(t, "True", "RolledOut")
	kubectl(t, "wait", "--for=condition=Ready", "gitrepository/rollout", "--timeout=30s")

	// A new revision that KULTA rolls back.
	pushRepository(t, "rollout", map[string]gitserver.File{"deploy/rollout.yaml": {Content: rolloutManifest("web:2")}})
	syncAndWait(t, "rollout")
	waitForRolledOut(t, "Unknown", "RolloutProgressing")
	playKulta(t, `{"phase":"Failed","message":"error rate 12%","decisions":[{"action":"Rollback","reason":"analysis failed"}]}`)
	waitForRolledOut(t, "False", "RolledBack")
	if e := waitForCDEvent(t, "dev.cdevents.service.rolledback.0.2.0", "default/rollout"); !strings.Contains(e.body.CustomData.Detail, "error rate") {
		t.Errorf("service.rolledback: %+v", e.body)
	}
	if reason, message := readyReason(t, "rollout"); reason != "RolledBack" || !strings.Contains(message, "Rollout rollout/web") {
		t.Errorf("Ready after a rollback: %s %s", reason, message)
	}
}

// TestAMissingRolloutIsAClearReason: a rolloutRef naming a Rollout that is
// not there, or one whose CRD is not installed (Argo's, here), ends the
// wait with RolloutNotFound naming it; the sync itself stands.
func TestAMissingRolloutIsAClearReason(t *testing.T) {
	pushRepository(t, "rollout-missing", map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	refs := map[string]string{
		"rollout-absent": "{name: absent}",
		"rollout-argo":   "{apiVersion: argoproj.io/v1alpha1, kind: Rollout, name: web}",
	}
	for name, ref := range refs {
		createNamespace(t, name)
		kubectlInput(t, gitRepository(name, "rollout-missing", name, "  healthTimeout: 2s\n  rolloutRef: "+ref+"\n"),
			"apply", "-f", "-")
	}
	for name, want := range map[string]string{"rollout-absent": "Rollout rollout-absent/absent", "rollout-argo": "Rollout rollout-argo/web"} {
		if message := waitForRolledOutOf(t, name, "False", "RolloutNotFound"); !strings.Contains(message, want) {
			t.Errorf("%s: RolledOut says %q, want it to name %s", name, message, want)
		}
		if phase := kubectl(t, "get", "gitrepository", name, "-o", "jsonpath={.status.phase}"); phase != "Synced" {
			t.Errorf("%s: phase %s, want the sync to stand", name, phase)
		}
	}
}
