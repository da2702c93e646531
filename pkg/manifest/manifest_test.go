package manifest

import (
	"context"
	"strings"
	"testing"

	"github.com/falsesystems/alumiini/pkg/git"
)

func files(kv ...string) []git.File {
	var out []git.File
	for i := 0; i < len(kv); i += 2 {
		out = append(out, git.File{Path: kv[i], Data: []byte(kv[i+1])})
	}
	return out
}

// renderRepo renders dir of a repository made of files.
func renderRepo(dir string, files []git.File) ([]Object, error) {
	return Render(context.Background(), dir, FilesReader(files))
}

const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n"

func TestRenderDirectory(t *testing.T) {
	objects, err := renderRepo("", files(
		"b/second.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: two\n---\n# only a comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: three\n",
		"a.json", `{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"one"}}`,
		"README.md", "not a manifest",
		".github/workflow.yaml", "on: push\n",
		"list.yml", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: four\n",
		"sub/kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n",
	))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range objects {
		names = append(names, o.GetName())
	}
	if got := strings.Join(names, ","); got != "one,two,three,four" {
		t.Errorf("objects %s, want one,two,three,four in path order", got)
	}
}

func TestRenderErrorsNameTheFile(t *testing.T) {
	cases := []struct {
		name  string
		files []git.File
		says  string
	}{
		{name: "invalid YAML", files: files("ok.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\nkind: [unclosed\n"),
			says: "ok.yaml:6: invalid YAML"},
		{name: "no apiVersion", files: files("x.yaml", "kind: ConfigMap\nmetadata:\n  name: a\n"), says: "x.yaml: object has no apiVersion"},
		{name: "no kind", files: files("x.yaml", "apiVersion: v1\nmetadata:\n  name: a\n"), says: "x.yaml: object has no kind"},
		{name: "no name", files: files("x.yaml", "apiVersion: v1\nkind: ConfigMap\n"), says: "ConfigMap has no metadata.name"},
		// A name or namespace is a segment of the request path: "../services/x/proxy"
		// would send the dry-run to a Service's proxy.
		{name: "name leaving its path", files: files("x.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ../services/x:80/proxy/admin\n"),
			says: `x.yaml: ConfigMap metadata.name "../services/x:80/proxy/admin": may not contain '/'`},
		{name: "namespace leaving its path", files: files("x.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: ..\n"),
			says: `x.yaml: ConfigMap metadata.namespace "..": may not be '..'`},
		{name: "kustomize output leaving its path", files: files("kustomization.yaml", "namePrefix: ../\nresources:\n- cm.yaml\n",
			"cm.yaml", strings.ReplaceAll(cm, "%s", "settings")), says: `metadata.name "../settings": may not contain '/'`},
		{name: "duplicate", files: files("a.yaml", strings.ReplaceAll(cm, "%s", "dup"), "b/c.yaml", strings.ReplaceAll(cm, "%s", "dup")),
			says: "b/c.yaml: ConfigMap dup is also defined in a.yaml"},
		{name: "remote base", files: files("kustomization.yaml", "resources:\n- https://github.com/org/repo//base\n"), says: `resources[0]: remote location "https://github.com/org/repo//base" (a URL) is not allowed`},
		{name: "helm chart", files: files("kustomization.yaml", "helmCharts:\n- name: x\n"), says: "not allowed"},
		{name: "plugin in a base", files: files("kustomization.yaml", "resources:\n- base\n", "base/kustomization.yaml", "transformers:\n- t.yaml\n"),
			says: "base/kustomization.yaml: transformers: not allowed"},
		{name: "base outside the path", files: files("kustomization.yaml", "resources:\n- ../other\n"), says: `kustomization.yaml: resources[0]: "../other" is not a file or directory in the repository`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderRepo("", tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v, want an error saying %q", err, tc.says)
			}
		})
	}
}

// TestKustomizeOutputNamesAreCheckedOutOfProcess: the build alumiini runs
// in a child process returns JSON, read by its own code path.
func TestKustomizeOutputNamesAreCheckedOutOfProcess(t *testing.T) {
	outOfProcess := Kustomize(func(_ context.Context, files []git.File, dir string) ([]byte, error) {
		return BuildJSON(files, dir)
	})
	_, err := Render(context.Background(), "", FilesReader(files("kustomization.yaml", "namePrefix: ../\nresources:\n- cm.yaml\n",
		"cm.yaml", strings.ReplaceAll(cm, "%s", "settings"))), outOfProcess)
	if want := `metadata.name "../settings": may not contain '/'`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want an error saying %q", err, want)
	}
}

func TestRenderKustomization(t *testing.T) {
	objects, err := renderRepo("", files(
		"kustomization.yaml", "namePrefix: prod-\ncommonLabels:\n  env: prod\nresources:\n- base\n",
		"base/kustomization.yaml", "resources:\n- cm.yaml\n",
		"base/cm.yaml", strings.ReplaceAll(cm, "%s", "settings"),
		"unreferenced.yaml", strings.ReplaceAll(cm, "%s", "ignored"),
	))
	if err != nil {
		t.Fatal(err)
	}
	if len(objects) != 1 || objects[0].GetName() != "prod-settings" || objects[0].GetLabels()["env"] != "prod" {
		t.Fatalf("kustomize output: %+v", objects)
	}
}
