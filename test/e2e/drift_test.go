package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/apply"
	"github.com/falsesystems/alumiini/test/gitserver"
)

// getRepository reads GitRepository default/name as kubectl shows it.
func getRepository(t *testing.T, name string) *v1alpha1.GitRepository {
	t.Helper()
	var repo v1alpha1.GitRepository
	out := kubectl(t, "get", "gitrepository", name, "-o", "json")
	if err := json.Unmarshal([]byte(out), &repo); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return &repo
}

// eventually polls check every 100ms until it returns "" or within passes,
// then fails with what check said last.
func eventually(t *testing.T, within time.Duration, check func() string) time.Duration {
	t.Helper()
	start := time.Now()
	last := ""
	for time.Since(start) < within {
		if last = check(); last == "" {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("after %s: %s", within, last)
	return 0
}

func settingsVersion(t *testing.T, namespace string) string {
	t.Helper()
	out, err := cluster.Kubectl(context.Background(), "get", "configmap", "settings", "-n", namespace, "-o", "jsonpath={.data.version}")
	if err != nil {
		return "(missing)"
	}
	return string(out)
}

func patchSettings(t *testing.T, namespace, manager, patch string) {
	t.Helper()
	kubectl(t, "patch", "configmap", "settings", "-n", namespace, "--type=merge", "-p", patch, "--field-manager="+manager)
}

func driftedObject(repo *v1alpha1.GitRepository, name string) *v1alpha1.DriftedObject {
	if repo.Status.Drift == nil {
		return nil
	}
	for i, o := range repo.Status.Drift.Objects {
		if o.Name == name {
			return &repo.Status.Drift.Objects[i]
		}
	}
	return nil
}

func TestDriftDeletedAndEditedObjectsAreCorrected(t *testing.T) {
	readyRepository(t, "drift-correct", "")
	kubectl(t, "delete", "configmap", "settings", "-n", "drift-correct")
	took := eventually(t, 15*time.Second, func() string {
		if v := settingsVersion(t, "drift-correct"); v != "1" {
			return "the deleted ConfigMap was not recreated: " + v
		}
		return ""
	})
	t.Logf("deleted → recreated in %s", took.Round(time.Millisecond))

	patchSettings(t, "drift-correct", "hand-edit", `{"data":{"version":"hacked"}}`)
	took = eventually(t, 15*time.Second, func() string {
		if v := settingsVersion(t, "drift-correct"); v != "1" {
			return "the edited field was not restored: " + v
		}
		return ""
	})
	t.Logf("edited → restored in %s", took.Round(time.Millisecond))
	eventually(t, 10*time.Second, func() string {
		repo := getRepository(t, "drift-correct")
		if repo.Status.Drift == nil || repo.Status.Drift.LastCorrected == nil || repo.Status.Drift.Drifted != 0 {
			return "status.drift does not show the correction"
		}
		if !strings.Contains(kubectl(t, "get", "events", "--field-selector", "involvedObject.name=drift-correct,reason=DriftCorrected", "-o", "name"), "event") {
			return "no DriftCorrected Event"
		}
		return ""
	})
}

// TestApplyingAsAlumiinisFieldManagerIsDrift: a tenant server-side applies
// the object alumiini applied, under alumiini's own field manager name and
// with every field alumiini set, one value changed. No field changes owner,
// only the time of alumiini's managedFields entry moves; the change is still
// corrected at once, not at the next interval (a minute after the sync
// readyRepository waited for, so 15 s cannot reach it).
func TestApplyingAsAlumiinisFieldManagerIsDrift(t *testing.T) {
	readyRepository(t, "drift-as-alumiini", "")
	time.Sleep(1100 * time.Millisecond) // managedFields times are in whole seconds
	live := settingsToApply(t, "drift-as-alumiini")
	live["data"] = map[string]any{"version": "hacked"}
	kubectlInput(t, toJSON(t, live), "apply", "--server-side", "--field-manager=alumiini", "-f", "-")
	owners := kubectl(t, "get", "configmap", "settings", "-n", "drift-as-alumiini", "-o", "jsonpath={.metadata.managedFields[*].manager}")
	if owners != "alumiini" {
		t.Fatalf("the tenant's apply left managers %q, want alumiini's entry alone", owners)
	}
	took := eventually(t, 15*time.Second, func() string {
		if v := settingsVersion(t, "drift-as-alumiini"); v != "1" {
			return "the value applied under alumiini's name was not restored: " + v
		}
		return ""
	})
	t.Logf("applied as alumiini → restored in %s", took.Round(time.Millisecond))
}

// TestTakingAFieldFromAlumiiniIsDrift: a tenant shares a field alumiini
// applied (applies git's value under another field manager), then applies
// under alumiini's name without that field. The values are still git's, but
// the field is now the tenant's alone, so a later change to it would move
// no ownership and go unseen until the next commit. alumiini takes the
// field back at once, says so in status, and the later change is corrected.
func TestTakingAFieldFromAlumiiniIsDrift(t *testing.T) {
	const ns = "drift-take-field"
	readyRepository(t, ns, "")
	kubectlInput(t, configMapV1, "apply", "-n", ns, "--server-side", "--force-conflicts", "--field-manager=intruder", "-f", "-")
	live := settingsToApply(t, ns)
	delete(live["data"].(map[string]any), "version")
	kubectlInput(t, toJSON(t, live), "apply", "--server-side", "--field-manager=alumiini", "-f", "-")

	took := eventually(t, 15*time.Second, func() string {
		owned := kubectl(t, "get", "configmap", "settings", "-n", ns, "-o", `jsonpath={.metadata.managedFields[?(@.manager=="alumiini")].fieldsV1}`)
		if !strings.Contains(owned, `"f:version"`) {
			return "alumiini did not take data.version back: it owns " + owned
		}
		if o := driftedObject(getRepository(t, ns), "settings"); o == nil || !strings.Contains(o.Message, "applied again to own them") {
			return fmt.Sprintf("status.drift does not say the ownership changed: %+v", o)
		}
		return ""
	})
	t.Logf("field taken → taken back in %s", took.Round(time.Millisecond))

	hacked := strings.Replace(configMapV1, `"1"`, `"hacked"`, 1)
	kubectlInput(t, hacked, "apply", "-n", ns, "--server-side", "--force-conflicts", "--field-manager=intruder", "-f", "-")
	took = eventually(t, 15*time.Second, func() string {
		if v := settingsVersion(t, ns); v != "1" {
			return "the field's later change was not restored: " + v
		}
		return ""
	})
	t.Logf("changed by its other owner → restored in %s", took.Round(time.Millisecond))
}

// TestAnApplyAsAlumiiniWhileItWasDownIsDrift: nothing of drift handling
// survives a restart, and an apply under alumiini's name is not someone
// else's by its managedFields. One made while alumiini was stopped is
// later than the GitRepository's last sync, so the restarted controller
// compares the object and restores it, instead of taking it as the
// baseline until the next commit.
func TestAnApplyAsAlumiiniWhileItWasDownIsDrift(t *testing.T) {
	const ns = "drift-while-down"
	readyRepository(t, ns, "")
	live := settingsToApply(t, ns)
	live["data"] = map[string]any{"version": "hacked"}
	hacked := toJSON(t, live)
	time.Sleep(1100 * time.Millisecond) // managedFields times are in whole seconds
	running := true
	startAlumiini := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := cluster.StartAlumiini(ctx); err != nil {
			t.Fatal(err)
		}
		running = true
	}
	t.Cleanup(func() {
		if !running { // a failure below must not leave the other tests without alumiini
			startAlumiini()
		}
	})
	running = false
	if err := cluster.StopAlumiini(); err != nil {
		t.Fatal(err)
	}
	kubectlInput(t, hacked, "apply", "--server-side", "--field-manager=alumiini", "-f", "-")
	startAlumiini()
	took := eventually(t, 30*time.Second, func() string {
		if v := settingsVersion(t, ns); v != "1" {
			return "the value applied under alumiini's name while it was down was not restored: " + v
		}
		if o := driftedObject(getRepository(t, ns), "settings"); o == nil || o.State != v1alpha1.DriftStateCorrected {
			return fmt.Sprintf("status.drift does not list the correction: %+v", o)
		}
		return ""
	})
	t.Logf("restarted → restored in %s", took.Round(time.Millisecond))
}

// TestAnApplyAsAlumiiniInItsOwnSecondIsDrift: whoever may write an applied
// object watches it and, the moment alumiini writes it, applies another
// value under alumiini's field manager name. Within the same second that
// leaves alumiini's managedFields entry as it was (same fields, same time in
// whole seconds), so no fingerprint showed it; the resourceVersion moving
// by a write that changed no one else's entry does, and it is corrected,
// whatever times the tenant gave other entries.
func TestAnApplyAsAlumiiniInItsOwnSecondIsDrift(t *testing.T) {
	const ns = "drift-same-second"
	readyRepository(t, ns, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	config, err := cluster.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	configMaps := dynamic.NewForConfigOrDie(config).Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace(ns)
	hacked := settingsToApply(t, ns)
	hacked["data"] = map[string]any{"version": "hacked"}
	body := []byte(toJSON(t, hacked))

	// First an entry dated 2099 (an Update may write managedFields): by
	// times alone, every later write would look like another writer's,
	// which hid this apply when entries' times were compared.
	current, err := configMaps.Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	current.SetManagedFields(append(current.GetManagedFields(), metav1.ManagedFieldsEntry{Manager: "tenant",
		Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Subresource: "status", FieldsType: "FieldsV1",
		Time:     &metav1.Time{Time: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)},
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{"f:nothing":{}}}}`)}}))
	if current, err = configMaps.Update(ctx, current, metav1.UpdateOptions{FieldManager: "tenant"}); err != nil {
		t.Fatal(err)
	}
	events, err := configMaps.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=settings", ResourceVersion: current.GetResourceVersion()})
	if err != nil {
		t.Fatal(err)
	}
	defer events.Stop()
	patchSettings(t, ns, "hand-edit", `{"data":{"version":"edited"}}`) // alumiini writes it back
	for attempt := 1; ; attempt++ {
		written := alumiinisNextWrite(t, events)
		applied, err := configMaps.Patch(ctx, "settings", types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: apply.FieldManager, Force: ptr.To(true)})
		if err != nil {
			t.Fatal(err)
		}
		if ownApplyTime(applied).Equal(ownApplyTime(written)) {
			break
		}
		if attempt == 5 {
			t.Fatal("5 applies under alumiini's name missed the second of its write")
		}
		// Another second: drift as before, which alumiini writes back.
	}
	took := eventually(t, 15*time.Second, func() string {
		if v := settingsVersion(t, ns); v != "1" {
			return "a value applied under alumiini's name in the second of its own write was not restored: " + v
		}
		return ""
	})
	t.Logf("restored in %s", took.Round(time.Millisecond))
}

// alumiinisNextWrite waits for the watch event of a write that gives the
// ConfigMap settings git's version again.
func alumiinisNextWrite(t *testing.T, events watch.Interface) *unstructured.Unstructured {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case event, ok := <-events.ResultChan():
			if !ok {
				t.Fatal("the watch of settings ended")
			}
			if u, isObject := event.Object.(*unstructured.Unstructured); isObject && event.Type == watch.Modified {
				if version, _, _ := unstructured.NestedString(u.Object, "data", "version"); version == "1" {
					return u
				}
			}
		case <-timeout:
			t.Fatal("alumiini did not write settings back within 30 s")
		}
	}
}

// ownApplyTime is the time of alumiini's apply entry in obj's managedFields.
func ownApplyTime(obj metav1.Object) time.Time {
	for _, m := range obj.GetManagedFields() {
		if apply.IsOwnApplyEntry(m) && m.Time != nil {
			return m.Time.Time
		}
	}
	return time.Time{}
}

// settingsToApply is the live ConfigMap settings of namespace as a client
// would apply it: without the fields the server sets.
func settingsToApply(t *testing.T, namespace string) map[string]any {
	t.Helper()
	var live map[string]any
	if err := json.Unmarshal([]byte(kubectl(t, "get", "configmap", "settings", "-n", namespace, "-o", "json")), &live); err != nil {
		t.Fatal(err)
	}
	meta := live["metadata"].(map[string]any)
	for _, serverSet := range []string{"managedFields", "resourceVersion", "uid", "creationTimestamp"} {
		delete(meta, serverSet)
	}
	return live
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestStatusWritesOfOthersAreNotDrift: another controller writing an
// applied object's status, or a label nobody applied, changes nothing and
// costs no status write.
func TestStatusWritesOfOthersAreNotDrift(t *testing.T) {
	createNamespace(t, "drift-status")
	pushRepository(t, "drift-status", map[string]gitserver.File{"deploy/svc.yaml": {Content: `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: LoadBalancer
  ports: [{port: 80}]
`}})
	kubectlInput(t, gitRepository("drift-status", "drift-status", "drift-status", ""), "apply", "-f", "-")
	kubectl(t, "wait", "--for=condition=Ready", "gitrepository/drift-status", "--timeout=60s")
	time.Sleep(time.Second) // let the apply's own watch events pass
	before := getRepository(t, "drift-status").ResourceVersion
	svcBefore := kubectl(t, "get", "service", "web", "-n", "drift-status", "-o", "jsonpath={.metadata.resourceVersion}")

	kubectl(t, "patch", "service", "web", "-n", "drift-status", "--subresource=status", "--type=merge",
		"-p", `{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]}}}`, "--field-manager=cloud-controller")
	kubectl(t, "label", "service", "web", "-n", "drift-status", "team=payments")
	time.Sleep(3 * time.Second)

	repo := getRepository(t, "drift-status")
	if repo.ResourceVersion != before || repo.Status.Drift != nil {
		t.Errorf("a status write and an unrelated label were taken for drift: status.drift %+v", repo.Status.Drift)
	}
	svc := kubectl(t, "get", "service", "web", "-n", "drift-status", "-o", "jsonpath={.metadata.labels.team} {.status.loadBalancer.ingress[0].ip}")
	if svc != "payments 192.0.2.10" {
		t.Errorf("alumiini undid another writer's fields: %q", svc)
	}
	if rv := kubectl(t, "get", "service", "web", "-n", "drift-status", "-o", "jsonpath={.metadata.resourceVersion}"); rv == svcBefore {
		t.Fatal("the test's own writes did not land")
	}
}

func TestDriftDetectOnlyReportsAndKeepsReadyTruthful(t *testing.T) {
	readyRepository(t, "drift-detect", "  drift:\n    mode: Detect\n")
	patchSettings(t, "drift-detect", "hand-edit", `{"data":{"version":"hacked"}}`)
	eventually(t, 15*time.Second, func() string {
		repo := getRepository(t, "drift-detect")
		o := driftedObject(repo, "settings")
		if o == nil || o.State != v1alpha1.DriftStateDetected || o.Manager != "hand-edit" || repo.Status.Drift.Drifted != 1 {
			return "status.drift does not report the edit"
		}
		if ready := kubectl(t, "get", "gitrepository", "drift-detect", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`); ready != "False" {
			return "Ready is " + ready + " while an object differs from git"
		}
		return ""
	})
	time.Sleep(2 * time.Second)
	if v := settingsVersion(t, "drift-detect"); v != "hacked" {
		t.Errorf("Detect changed the object: %q", v)
	}
	if !strings.Contains(kubectl(t, "get", "events", "--field-selector", "involvedObject.name=drift-detect,reason=DriftDetected", "-o", "name"), "event") {
		t.Error("no DriftDetected Event")
	}
	// Putting it back by hand clears the report, though the field is now
	// hand-edit's alone.
	patchSettings(t, "drift-detect", "hand-edit", `{"data":{"version":"1"}}`)
	eventually(t, 15*time.Second, func() string {
		repo := getRepository(t, "drift-detect")
		if repo.Status.Drift != nil && repo.Status.Drift.Drifted != 0 {
			return "the drift report outlived the drift"
		}
		if ready := kubectl(t, "get", "gitrepository", "drift-detect", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`); ready != "True" {
			return "Ready is " + ready + " once the object matches git again"
		}
		return ""
	})
	// Its next change moves no field's ownership, and is still reported.
	patchSettings(t, "drift-detect", "hand-edit", `{"data":{"version":"hacked-again"}}`)
	eventually(t, 15*time.Second, func() string {
		if repo := getRepository(t, "drift-detect"); repo.Status.Drift == nil || repo.Status.Drift.Drifted != 1 {
			return "the second edit by the field's new owner is not reported"
		}
		return ""
	})
}

func TestDriftGracePeriodThenCorrection(t *testing.T) {
	readyRepository(t, "drift-grace", "  drift:\n    healGracePeriod: 4s\n")
	patchSettings(t, "drift-grace", "hotfix", `{"data":{"version":"hotfix"}}`)
	edited := time.Now()
	eventually(t, 10*time.Second, func() string {
		if o := driftedObject(getRepository(t, "drift-grace"), "settings"); o == nil || o.State != v1alpha1.DriftStateGracePeriod {
			return "the hotfix is not reported as within its grace period"
		}
		return ""
	})
	if v := settingsVersion(t, "drift-grace"); v != "hotfix" && time.Since(edited) < 3*time.Second {
		t.Errorf("corrected within the grace period: %q", v)
	}
	eventually(t, 20*time.Second, func() string {
		if v := settingsVersion(t, "drift-grace"); v != "1" {
			return "not corrected after the grace period: " + v
		}
		return ""
	})
	if took := time.Since(edited); took < 4*time.Second {
		t.Errorf("corrected after %s, before the 4s grace period", took)
	}
}

func TestGitWinsOverAHotfixInItsGracePeriod(t *testing.T) {
	readyRepository(t, "drift-gitwins", "  drift:\n    healGracePeriod: 1h\n")
	patchSettings(t, "drift-gitwins", "hotfix", `{"data":{"version":"hotfix"}}`)
	eventually(t, 10*time.Second, func() string {
		if o := driftedObject(getRepository(t, "drift-gitwins"), "settings"); o == nil || o.State != v1alpha1.DriftStateGracePeriod {
			return "the hotfix is not reported"
		}
		return ""
	})
	pushRepository(t, "drift-gitwins", map[string]gitserver.File{"deploy/cm.yaml": {Content: strings.Replace(configMapV1, `"1"`, `"2"`, 1)}})
	syncAndWait(t, "drift-gitwins")
	if v := settingsVersion(t, "drift-gitwins"); v != "2" {
		t.Errorf("a commit changing the hotfixed object did not win: %q", v)
	}
	// The sync of the new commit may be the one the push's watch event
	// started rather than the requested one; either says so.
	o := driftedObject(getRepository(t, "drift-gitwins"), "settings")
	if o == nil || o.State != v1alpha1.DriftStateCorrected || !strings.Contains(o.Message, "git changed") {
		t.Errorf("status does not say git won: %+v", o)
	}
}

func TestBreakGlassObjectIsLeftAlone(t *testing.T) {
	readyRepository(t, "drift-glass", "")
	kubectl(t, "annotate", "configmap", "settings", "-n", "drift-glass", "alumiini.false.systems/suspend-heal=true")
	patchSettings(t, "drift-glass", "oncall", `{"data":{"version":"incident"}}`)
	time.Sleep(2 * time.Second)
	if v := settingsVersion(t, "drift-glass"); v != "incident" {
		t.Fatalf("a held object was healed: %q", v)
	}
	// A git change to it is not applied; the status lists it as held.
	pushRepository(t, "drift-glass", map[string]gitserver.File{"deploy/cm.yaml": {Content: strings.Replace(configMapV1, `"1"`, `"2"`, 1)}})
	syncAndWait(t, "drift-glass")
	if v := settingsVersion(t, "drift-glass"); v != "incident" {
		t.Errorf("a git change overwrote a held object: %q", v)
	}
	repo := getRepository(t, "drift-glass")
	if o := driftedObject(repo, "settings"); o == nil || o.State != v1alpha1.DriftStateHeld || repo.Status.Drift.Held != 1 {
		t.Errorf("status does not list the held object: %+v", repo.Status.Drift)
	}
	if !strings.Contains(kubectl(t, "get", "events", "--field-selector", "involvedObject.name=drift-glass,reason=HealSuspended", "-o", "name"), "event") {
		t.Error("no HealSuspended warning")
	}
	// Removing it from git does not prune it.
	pushRepository(t, "drift-glass", map[string]gitserver.File{"deploy/other.yaml": {Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n"}}, "deploy/cm.yaml")
	syncAndWait(t, "drift-glass")
	if v := settingsVersion(t, "drift-glass"); v != "incident" {
		t.Errorf("a held object was pruned: %q", v)
	}
	// Released, the next sync prunes it.
	kubectl(t, "annotate", "configmap", "settings", "-n", "drift-glass", "alumiini.false.systems/suspend-heal-")
	eventually(t, 15*time.Second, func() string {
		syncAndWait(t, "drift-glass")
		if v := settingsVersion(t, "drift-glass"); v != "(missing)" {
			return "a released object that left git was not pruned: " + v
		}
		return ""
	})
}

// TestBreakGlassIsRefusedWhereNotAllowed: with spec.drift.allowBreakGlass
// false the annotation holds nothing: the change is corrected, and the
// object is pruned when it leaves git. (Who may then suspend or delete the
// GitRepository: TestUpdatesOfAnAdminsGitRepository and
// TestDeletingWhatPrunesAsAlumiiniNeedsEscalate.)
func TestBreakGlassIsRefusedWhereNotAllowed(t *testing.T) {
	const name = "drift-no-glass"
	readyRepository(t, name, "  drift:\n    allowBreakGlass: false\n")
	kubectl(t, "annotate", "configmap", "settings", "-n", name, "alumiini.false.systems/suspend-heal=true")
	patchSettings(t, name, "tenant", `{"data":{"version":"kept"}}`)
	eventually(t, 15*time.Second, func() string {
		if v := settingsVersion(t, name); v != "1" {
			return "a change under the break-glass annotation was not corrected: " + v
		}
		repo := getRepository(t, name)
		if o := driftedObject(repo, "settings"); o == nil || o.State != v1alpha1.DriftStateCorrected {
			return fmt.Sprintf("status does not show the correction: %+v", repo.Status.Drift)
		}
		if repo.Status.Drift.Held != 0 {
			return fmt.Sprintf("status holds objects: %+v", repo.Status.Drift)
		}
		return ""
	})
	if events := kubectl(t, "get", "events", "--field-selector", "involvedObject.name="+name+",reason=HealSuspended", "-o", "name"); events != "" {
		t.Errorf("a HealSuspended warning where break-glass is refused: %s", events)
	}
	pushRepository(t, name, map[string]gitserver.File{"deploy/other.yaml": {Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n"}}, "deploy/cm.yaml")
	syncAndWait(t, name)
	if left := kubectl(t, "get", "configmap", "settings", "-n", name, "--ignore-not-found", "-o", "name"); left != "" {
		t.Errorf("an annotated object that left git was not pruned: %s", left)
	}
}

func TestIgnoredFieldIsLeftToItsWriter(t *testing.T) {
	readyRepository(t, "drift-ignore", "  drift:\n    ignore:\n    - kind: ConfigMap\n      paths: [/data/version]\n")
	patchSettings(t, "drift-ignore", "autoscaler", `{"data":{"version":"7"}}`)
	time.Sleep(3 * time.Second)
	if v := settingsVersion(t, "drift-ignore"); v != "7" {
		t.Errorf("an ignored field was healed: %q", v)
	}
	if repo := getRepository(t, "drift-ignore"); repo.Status.Drift != nil && repo.Status.Drift.Drifted != 0 {
		t.Errorf("an ignored field was reported: %+v", repo.Status.Drift)
	}
}

// TestAFightWithAnotherWriterBacksOff: a writer that puts its value back
// every 200ms is corrected a few times, not hundreds, and named.
func TestAFightWithAnotherWriterBacksOff(t *testing.T) {
	readyRepository(t, "drift-fight", "")
	stop := time.Now().Add(8 * time.Second)
	writes := 0
	for time.Now().Before(stop) {
		if settingsVersion(t, "drift-fight") != "operator" {
			patchSettings(t, "drift-fight", "stubborn-operator", `{"data":{"version":"operator"}}`)
			writes++
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("the other writer had to write %d times in 8s", writes)
	if writes > 8 {
		t.Errorf("alumiini corrected %d times in 8s; corrections of a fight must back off", writes)
	}
	o := driftedObject(getRepository(t, "drift-fight"), "settings")
	if o == nil || o.Manager != "stubborn-operator" {
		t.Fatalf("status does not name the other writer: %+v", o)
	}
	if o.State != v1alpha1.DriftStateBackingOff && !strings.Contains(o.Message, "corrections in a row") {
		t.Errorf("status does not say it is a fight: %+v", o)
	}
}

// dryRunsAndWrites sums kube-apiserver's mutating requests on the given
// resources, and among them dry-runs, from its own metrics.
func dryRunsAndWrites(t *testing.T, resources ...string) (dryRuns, writes int) {
	t.Helper()
	metrics, err := cluster.Metrics(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		counted := false
		for _, r := range resources {
			counted = counted || strings.Contains(line, `resource="`+r+`"`)
		}
		mutating := false
		for _, verb := range []string{`verb="POST"`, `verb="PUT"`, `verb="PATCH"`, `verb="DELETE"`, `verb="APPLY"`} {
			mutating = mutating || strings.Contains(line, verb)
		}
		if !counted || !mutating {
			continue
		}
		var n float64
		fields := strings.Fields(line)
		fmt.Sscanf(fields[len(fields)-1], "%g", &n)
		if strings.Contains(line, `dry_run="All"`) {
			dryRuns += int(n)
		} else {
			writes += int(n)
		}
	}
	return dryRuns, writes
}

// TestAnIdleIntervalCostsNoWriteAndNoDryRun: a GitRepository whose remote
// and objects are unchanged re-checks every object at each interval against
// the drift watch, and that costs kube-apiserver no write and no dry-run.
// Its objects are of kinds no other test applies (LimitRange, PodTemplate),
// so the API server's counts of them are this GitRepository's alone. The
// PodTemplate is left unchanged by a second commit, so what drift remembers
// of it is its live copy, read whole; its two ports are ones kube-apiserver
// orders otherwise than a JSON map's sorted keys (80 before 443), which,
// before commit a0b5aca, made it look drifted at every interval.
func TestAnIdleIntervalCostsNoWriteAndNoDryRun(t *testing.T) {
	createNamespace(t, "drift-idle")
	limits := func(cpu string) gitserver.File {
		return gitserver.File{Content: "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: limits\nspec:\n  limits:\n  - type: Container\n    max: {cpu: \"" + cpu + "\"}\n"}
	}
	pushRepository(t, "drift-idle", map[string]gitserver.File{
		"deploy/limits.yaml": limits("2"),
		"deploy/template.yaml": {Content: "apiVersion: v1\nkind: PodTemplate\nmetadata:\n  name: runner\ntemplate:\n  spec:\n    containers:\n" +
			"    - {name: c, image: busybox, ports: [{containerPort: 80}, {containerPort: 443}]}\n"}})
	kubectlInput(t, strings.Replace(gitRepository("drift-idle", "drift-idle", "drift-idle", ""), "interval: 1m", "interval: 10s", 1), "apply", "-f", "-")
	kubectl(t, "wait", "--for=condition=Ready", "gitrepository/drift-idle", "--timeout=60s")
	second := pushRepository(t, "drift-idle", map[string]gitserver.File{"deploy/limits.yaml": limits("3")})
	kubectl(t, "wait", "--for=jsonpath={.status.lastSyncedCommit}="+second, "gitrepository/drift-idle", "--timeout=60s")
	time.Sleep(2 * time.Second)
	dryBefore, writesBefore := dryRunsAndWrites(t, "limitranges", "podtemplates")
	rv := getRepository(t, "drift-idle").ResourceVersion
	time.Sleep(22 * time.Second) // two intervals
	dryAfter, writesAfter := dryRunsAndWrites(t, "limitranges", "podtemplates")
	if dryAfter != dryBefore || writesAfter != writesBefore {
		t.Errorf("two idle intervals cost %d dry-runs and %d writes", dryAfter-dryBefore, writesAfter-writesBefore)
	}
	if got := getRepository(t, "drift-idle").ResourceVersion; got != rv {
		t.Errorf("an idle interval wrote the GitRepository")
	}
	if dryBefore == 0 {
		t.Fatal("the counts show no dry-run at all: the metric or its labels changed, and this test would pass whatever happens")
	}
	// A deleted object still comes back at once.
	kubectl(t, "delete", "podtemplate", "runner", "-n", "drift-idle")
	eventually(t, 15*time.Second, func() string {
		if _, err := cluster.Kubectl(context.Background(), "get", "podtemplate", "runner", "-n", "drift-idle"); err != nil {
			return "not recreated"
		}
		return ""
	})
}
