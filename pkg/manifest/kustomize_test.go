package manifest

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/falsesystems/alumiini/pkg/git"
)

// overlayRepo is the common layout: a base, and an overlay that reaches it
// with ../../base and uses the features people use.
var overlayRepo = files(
	"base/kustomization.yaml", "resources:\n- deployment.yaml\n- service.yaml\n- configmap.yaml\n",
	"base/deployment.yaml", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: ghcr.io/example/web:1.0
        ports:
        - containerPort: 8080
        envFrom:
        - configMapRef: {name: web-config}
`,
	"base/service.yaml", `apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 8080
`,
	"base/configmap.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web-static\ndata:\n  a: b\n",
	"overlays/prod/kustomization.yaml", `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namePrefix: prod-
labels:
- pairs: {env: prod}
  includeTemplates: true
resources:
- ../../base
patches:
- path: replicas.yaml
- target: {kind: Service, name: web}
  patch: |-
    - op: replace
      path: /spec/ports/0/port
      value: 8080
images:
- name: ghcr.io/example/web
  newTag: "2.0"
configMapGenerator:
- name: web-config
  files:
  - app.properties
  literals:
  - LOG_LEVEL=info
`,
	"overlays/prod/replicas.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n",
	"overlays/prod/app.properties", "greeting=hello\n",
	"README.md", "not read\n",
)

// TestRenderOverlay builds the overlay below the root: the base outside the
// overlay's directory is found, every feature applies, numbers come out as
// int64, and every object survives DeepCopy (Go ints made it panic).
func TestRenderOverlay(t *testing.T) {
	var asked []string
	read := FilesReader(overlayRepo)
	recording := func(ctx context.Context, p string) ([]git.File, error) {
		asked = append(asked, p)
		return read(ctx, p)
	}
	objects, err := Render(context.Background(), "overlays/prod", recording)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(asked, ","); got != "overlays/prod," {
		t.Errorf("read %q, want overlays/prod then the root", got)
	}
	byName := map[string]*unstructured.Unstructured{}
	for _, o := range objects {
		_ = o.DeepCopy()
		byName[o.GetKind()+"/"+o.GetName()] = o.Unstructured
		if o.GetLabels()["env"] != "prod" {
			t.Errorf("%s has labels %v, want env=prod", o.Source, o.GetLabels())
		}
		if !strings.HasPrefix(o.Source, "overlays/prod/kustomization.yaml (") {
			t.Errorf("source %q, want the overlay's kustomization", o.Source)
		}
	}
	deploy := byName["Deployment/prod-web"]
	if deploy == nil {
		t.Fatalf("no Deployment prod-web in %v", keys(byName))
	}
	wantField(t, deploy, int64(3), "spec", "replicas")
	container := nested(t, deploy, "spec", "template", "spec", "containers").([]interface{})[0].(map[string]interface{})
	if container["image"] != "ghcr.io/example/web:2.0" {
		t.Errorf("image %v, want ghcr.io/example/web:2.0", container["image"])
	}
	if port := container["ports"].([]interface{})[0].(map[string]interface{})["containerPort"]; port != int64(8080) {
		t.Errorf("containerPort %#v, want int64 8080", port)
	}
	wantField(t, deploy, "prod", "spec", "template", "metadata", "labels", "env")
	ref := container["envFrom"].([]interface{})[0].(map[string]interface{})["configMapRef"].(map[string]interface{})["name"].(string)
	generated := byName["ConfigMap/"+ref]
	if !strings.HasPrefix(ref, "prod-web-config-") || generated == nil {
		t.Fatalf("envFrom names %q, want the generated prod-web-config-<hash> among %v", ref, keys(byName))
	}
	wantField(t, generated, "greeting=hello\n", "data", "app.properties")
	wantField(t, generated, "info", "data", "LOG_LEVEL")
	service := byName["Service/prod-web"]
	if service == nil || byName["ConfigMap/prod-web-static"] == nil {
		t.Fatalf("missing Service prod-web or ConfigMap prod-web-static in %v", keys(byName))
	}
	if port := nested(t, service, "spec", "ports").([]interface{})[0].(map[string]interface{})["port"]; port != int64(8080) {
		t.Errorf("Service port %#v, want int64 8080 (JSON 6902 patch)", port)
	}
}

func nested(t *testing.T, u *unstructured.Unstructured, fields ...string) interface{} {
	t.Helper()
	v, ok, err := unstructured.NestedFieldNoCopy(u.Object, fields...)
	if !ok || err != nil {
		t.Fatalf("%s has no %s (%v)", u.GetName(), strings.Join(fields, "."), err)
	}
	return v
}

func wantField(t *testing.T, u *unstructured.Unstructured, want interface{}, fields ...string) {
	t.Helper()
	if got := nested(t, u, fields...); got != want {
		t.Errorf("%s %s = %#v, want %#v", u.GetName(), strings.Join(fields, "."), got, want)
	}
}

func keys(m map[string]*unstructured.Unstructured) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestRenderConfinedToRepository points each kind of location outside the
// repository, by ".." past the root and by absolute paths: each fails with an
// *Error naming the kustomization and the location, never reading the disk.
func TestRenderConfinedToRepository(t *testing.T) {
	outside := []string{"/etc/passwd", "/../../etc/passwd", "../../../../etc/passwd", "../../../../etc"}
	fields := map[string]string{
		"resources":      "resources:\n- LOC\n",
		"components":     "components:\n- LOC\n",
		"patches":        "resources:\n- cm.yaml\npatches:\n- path: LOC\n",
		"generator file": "configMapGenerator:\n- name: g\n  files:\n  - LOC\n",
		"crds":           "resources:\n- cm.yaml\ncrds:\n- LOC\n",
	}
	for name, k := range fields {
		for _, loc := range outside {
			t.Run(name+" "+loc, func(t *testing.T) {
				_, err := renderRepo("apps/prod", files(
					"apps/prod/kustomization.yaml", strings.ReplaceAll(k, "LOC", loc),
					"apps/prod/cm.yaml", strings.ReplaceAll(cm, "%s", "a"),
				))
				var merr *Error
				if !errors.As(err, &merr) || merr.Source != "apps/prod/kustomization.yaml" ||
					!strings.Contains(merr.Message, "is not a") || !strings.Contains(merr.Message, loc) {
					t.Fatalf("got %v, want apps/prod/kustomization.yaml saying %q is not in the repository", err, loc)
				}
			})
		}
	}
}

// TestKustomizeFileSystemHoldsOnlyTheRepository checks the second wall on its
// own: kustomize run without the preflight still cannot read a file of the
// disk, however the path is written, because its file system holds only the
// repository.
func TestKustomizeFileSystemHoldsOnlyTheRepository(t *testing.T) {
	for _, loc := range []string{"/etc/passwd", "/../../etc/passwd", "../../../etc/passwd"} {
		repo := newRepository(files(
			"a/b/kustomization.yaml", "configMapGenerator:\n- name: g\n  files:\n  - "+loc+"\n",
		))
		fs, err := repo.fileSystem()
		if err != nil {
			t.Fatal(err)
		}
		m, err := build(context.Background(), fs, "/a/b")
		if err == nil {
			t.Fatalf("%s: kustomize read it: %v", loc, m.Resources())
		}
	}
}

// TestRenderDirMustStayInTheRepository: the path itself cannot leave the
// repository, whatever the ReadFunc would do.
func TestRenderDirMustStayInTheRepository(t *testing.T) {
	for _, dir := range []string{"..", "../x", "a/../../b", "a/../b", "/etc", "a\\b"} {
		_, err := renderRepo(dir, files("x.yaml", strings.ReplaceAll(cm, "%s", "a")))
		var merr *Error
		if !errors.As(err, &merr) {
			t.Errorf("dir %q: got %v, want a *manifest.Error", dir, err)
		}
	}
	if _, err := renderRepo("./apps/", files("apps/x.yaml", strings.ReplaceAll(cm, "%s", "a"))); err != nil {
		t.Errorf("dir ./apps/: %v", err)
	}
}

// TestRenderPlainDirectoryReadsOnlyIt: without a kustomization, only dir is
// read, sources name files from the repository root, and objects DeepCopy.
func TestRenderPlainDirectoryReadsOnlyIt(t *testing.T) {
	var asked []string
	read := FilesReader(files(
		"apps/deploy.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  replicas: 2\n",
		"other/x.yaml", "not: [valid",
	))
	objects, err := Render(context.Background(), "apps", func(ctx context.Context, p string) ([]git.File, error) {
		asked = append(asked, p)
		return read(ctx, p)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(asked) != 1 || asked[0] != "apps" || len(objects) != 1 || objects[0].Source != "apps/deploy.yaml" {
		t.Fatalf("read %q, got %+v; want only apps read, one object from apps/deploy.yaml", asked, objects)
	}
	_ = objects[0].DeepCopy()
}

// TestRenderReadErrorIsAnError: a failing ReadFunc becomes an *Error that
// still wraps the cause.
func TestRenderReadErrorIsAnError(t *testing.T) {
	cause := errors.New("object not found")
	_, err := Render(context.Background(), "apps", func(context.Context, string) ([]git.File, error) { return nil, cause })
	var merr *Error
	if !errors.As(err, &merr) || !errors.Is(err, cause) || merr.Source != "apps" {
		t.Fatalf("got %v, want an *Error from apps wrapping the cause", err)
	}
	if _, err := renderRepo("missing", files("x.yaml", "")); err == nil {
		t.Fatal("FilesReader served a path that holds no file")
	}
}

// TestRenderHonoursContext: a cancelled ctx ends Render at once; so does one
// that expires while another build holds kustomize, and one that expires
// while kustomize runs (a build cannot be interrupted, so Render stops
// waiting for it).
func TestRenderHonoursContext(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, dir := range []string{"", "overlays/prod"} {
		_, err := Render(cancelled, dir, FilesReader(overlayRepo))
		wantStopped(t, err, context.Canceled)
	}

	kustomizeSlot <- struct{}{} // another build is running
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := Render(ctx, "overlays/prod", FilesReader(overlayRepo))
	cancel()
	<-kustomizeSlot
	wantStopped(t, err, context.DeadlineExceeded)

	release := make(chan struct{})
	var finished sync.WaitGroup
	finished.Add(1)
	real := runKustomize
	runKustomize = func(fs filesys.FileSystem, dir string) (resmap.ResMap, error) {
		defer finished.Done()
		<-release
		return real(fs, dir)
	}
	defer func() { runKustomize = real }()
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = Render(ctx, "overlays/prod", FilesReader(overlayRepo))
	wantStopped(t, err, context.DeadlineExceeded)
	close(release)
	finished.Wait()
	runKustomize = real
	if _, err := Render(context.Background(), "overlays/prod", FilesReader(overlayRepo)); err != nil {
		t.Fatalf("after an abandoned build: %v", err)
	}
}

func wantStopped(t *testing.T, err, cause error) {
	t.Helper()
	var merr *Error
	if !errors.As(err, &merr) || !errors.Is(err, cause) || !strings.Contains(err.Error(), "rendering stopped") {
		t.Fatalf("got %v, want an *Error wrapping %v", err, cause)
	}
}

// TestKustomizePanicIsAnError: kustomize runs in its own goroutine, out of
// reach of the worker's crash recovery, so a panic there must come back as
// an error rather than end the process.
func TestKustomizePanicIsAnError(t *testing.T) {
	real := runKustomize
	runKustomize = func(filesys.FileSystem, string) (resmap.ResMap, error) { panic("boom") }
	defer func() { runKustomize = real }()
	_, err := renderRepo("overlays/prod", overlayRepo)
	var merr *Error
	if !errors.As(err, &merr) || !strings.Contains(err.Error(), "kustomize panicked: boom") {
		t.Fatalf("got %v, want an *Error saying kustomize panicked", err)
	}
}

// TestRenderRefusesKustomizationDiamonds: components shared at every level
// make kustomize run a directory once per path to it, 2^depth times; the
// preflight counts the paths and refuses before the build.
func TestRenderRefusesKustomizationDiamonds(t *testing.T) {
	kv := []string{"kustomization.yaml", "resources:\n- cm.yaml\ncomponents:\n- c0a\n- c0b\n", "cm.yaml", strings.ReplaceAll(cm, "%s", "a")}
	const depth = 12
	for i := 0; i < depth; i++ {
		next := "components:\n- ../c" + strconv.Itoa(i+1) + "a\n- ../c" + strconv.Itoa(i+1) + "b\n"
		if i == depth-1 {
			next = "labels:\n- pairs: {x: z}\n"
		}
		for _, side := range []string{"a", "b"} {
			kv = append(kv, "c"+strconv.Itoa(i)+side+"/kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"+next)
		}
	}
	_, err := renderRepo("", files(kv...))
	if err == nil || !strings.Contains(err.Error(), "more than 1000 kustomizations") {
		t.Fatalf("got %v, want the diamond refused", err)
	}
}

// TestRenderRefusesCycles: a base that leads back to itself is named.
func TestRenderRefusesCycles(t *testing.T) {
	_, err := renderRepo("a", files(
		"a/kustomization.yaml", "resources:\n- ../b\n",
		"b/kustomization.yaml", "resources:\n- ../a\n",
	))
	if err == nil || !strings.Contains(err.Error(), "b/kustomization.yaml: resources[0]: \"../a\" leads back to a") {
		t.Fatalf("got %v, want the cycle named", err)
	}
}

// TestRenderReadsAnyFileOfTheRepository: a kustomization may use files
// outside its own directory, if they are in the repository (a patch shared
// by overlays), and a directory it names must hold a kustomization.
func TestRenderReadsAnyFileOfTheRepository(t *testing.T) {
	repo := files(
		"overlays/prod/Kustomization", "resources:\n- ../../base/cm.yaml\npatches:\n- path: ../../shared/patch.yaml\n",
		"base/cm.yaml", strings.ReplaceAll(cm, "%s", "a"),
		"shared/patch.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  patched: \"yes\"\n",
	)
	objects, err := renderRepo("overlays/prod", repo)
	if err != nil || len(objects) != 1 || objects[0].Object["data"].(map[string]interface{})["patched"] != "yes" {
		t.Fatalf("got %v %v, want the shared patch applied", objects, err)
	}
	_, err = renderRepo("overlays/prod", files(
		"overlays/prod/kustomization.yaml", "resources:\n- ../../base\n",
		"base/cm.yaml", strings.ReplaceAll(cm, "%s", "a"),
	))
	if err == nil || err.Error() != `overlays/prod/kustomization.yaml: resources[0]: directory "../../base" holds no kustomization.yaml` {
		t.Fatalf("got %v, want the directory without a kustomization named", err)
	}
}
