package e2e

import (
	"strings"
	"testing"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/test/gitserver"
)

// TestKustomizeOverlayOfABase syncs the layout most repositories have: an
// overlay under overlays/prod that builds on ../../base, with patches, an
// image tag, a name prefix and a generated ConfigMap. A Deployment with
// replicas and a Service with ports once crash-looped the worker (kustomize's
// Go ints), and an overlay could not reach its base.
func TestKustomizeOverlayOfABase(t *testing.T) {
	createNamespace(t, "overlay")
	pushRepository(t, "overlay", map[string]gitserver.File{
		"base/kustomization.yaml": {Content: "resources: [deployment.yaml, service.yaml]\n"},
		"base/deployment.yaml": {Content: `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: registry.example.com/web:1.0
        ports: [{containerPort: 8080}]
`},
		"base/service.yaml": {Content: `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`},
		"overlays/prod/kustomization.yaml": {Content: `resources: [../../base]
namePrefix: prod-
labels:
- pairs: {tier: prod}
images:
- name: registry.example.com/web
  newTag: "2.0"
patches:
- path: replicas.yaml
- target: {kind: Service, name: web}
  patch: |-
    - op: replace
      path: /spec/ports/0/port
      value: 8081
configMapGenerator:
- name: settings
  files: [app.properties]
  literals: [mode=production]
`},
		"overlays/prod/replicas.yaml":  {Content: "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 0\n"},
		"overlays/prod/app.properties": {Content: "greeting=hello\n"},
	})
	repo := strings.Replace(gitRepository("overlay", "overlay", "overlay", ""), "path: deploy", "path: overlays/prod", 1)
	kubectlInput(t, repo, "apply", "-f", "-")
	message := waitForPhase(t, "default", "overlay", v1alpha1.PhaseSynced)
	if !strings.Contains(message, "3 created") {
		t.Errorf("sync message %q, want 3 objects created", message)
	}

	get := func(args ...string) string {
		return kubectl(t, append([]string{"get", "-n", "overlay"}, args...)...)
	}
	if got := get("deployment", "prod-web", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.metadata.labels.tier}"); got != "0 registry.example.com/web:2.0 prod" {
		t.Errorf("the Deployment: %q", got)
	}
	if got := get("service", "prod-web", "-o", "jsonpath={.spec.ports[0].port}"); got != "8081" {
		t.Errorf("the Service's patched port: %q", got)
	}
	names := get("configmaps", "-l", "tier=prod", "-o", "jsonpath={.items[*].metadata.name}")
	if !strings.HasPrefix(names, "prod-settings-") {
		t.Fatalf("the generated ConfigMap (with its hash suffix): %q", names)
	}
	if got := get("configmap", names, "-o", "jsonpath={.data.mode} {.data.app\\.properties}"); got != "production greeting=hello\n" {
		t.Errorf("the generated ConfigMap's data: %q", got)
	}
	kubectl(t, "delete", "gitrepository", "overlay", "--timeout=60s")
}
