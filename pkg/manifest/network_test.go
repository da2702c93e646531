package manifest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// tripwire catches every way kustomize could reach out while a test runs: an
// HTTP server on 127.0.0.1 that counts requests, a fake git first in PATH
// that records being run, and a fresh TMPDIR where clone directories
// ("kustomize-*") would appear. Proxy variables point at a closed loopback
// port, so even an escaped git subprocess could not reach another host.
type tripwire struct {
	url      string
	requests atomic.Int64
	gitLog   string
	tmp      string
}

func newTripwire(t *testing.T) *tripwire {
	w := &tripwire{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		w.requests.Add(1)
		_, _ = rw.Write([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fetched\n"))
	}))
	t.Cleanup(srv.Close)
	w.url = srv.URL

	bin := t.TempDir()
	w.gitLog = filepath.Join(t.TempDir(), "git.log")
	script := "#!/bin/sh\necho \"$@\" >> '" + w.gitLog + "'\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, "git"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	w.tmp = t.TempDir()
	t.Setenv("TMPDIR", w.tmp)
	for _, v := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"} {
		t.Setenv(v, "http://127.0.0.1:1")
	}
	t.Setenv("GIT_SSH_COMMAND", "false")
	return w
}

// tripped says what reached out, or "".
func (w *tripwire) tripped() string {
	var what []string
	if n := w.requests.Load(); n > 0 {
		what = append(what, "HTTP requests")
	}
	if _, err := os.Stat(w.gitLog); err == nil {
		what = append(what, "git was run")
	}
	if clones, _ := filepath.Glob(filepath.Join(w.tmp, "kustomize-*")); len(clones) > 0 {
		what = append(what, "clone directories left in TMPDIR")
	}
	return strings.Join(what, ", ")
}

// locationFields has, for every field of a kustomization that names a
// location, a kustomization putting loc there. TestEveryKustomizationFieldIsKnown
// keeps it in step with types.Kustomization.
var locationFields = map[string]string{
	"resources":                     "resources:\n- LOC\n",
	"bases":                         "bases:\n- LOC\n",
	"components":                    "components:\n- LOC\n",
	"patches[].path":                "resources:\n- cm.yaml\npatches:\n- path: LOC\n",
	"patchesJson6902[].path":        "resources:\n- cm.yaml\npatchesJson6902:\n- target: {version: v1, kind: ConfigMap, name: a}\n  path: LOC\n",
	"patchesStrategicMerge":         "resources:\n- cm.yaml\npatchesStrategicMerge:\n- LOC\n",
	"configMapGenerator.files":      "configMapGenerator:\n- name: g\n  files:\n  - LOC\n",
	"configMapGenerator.files key=": "configMapGenerator:\n- name: g\n  files:\n  - key=LOC\n",
	"configMapGenerator.envs":       "configMapGenerator:\n- name: g\n  envs:\n  - LOC\n",
	"configMapGenerator.env":        "configMapGenerator:\n- name: g\n  env: LOC\n",
	"secretGenerator.files":         "secretGenerator:\n- name: g\n  files:\n  - LOC\n",
	"secretGenerator.envs":          "secretGenerator:\n- name: g\n  envs:\n  - LOC\n",
	"openapi.path":                  "resources:\n- cm.yaml\nopenapi:\n  path: LOC\n",
	"crds":                          "resources:\n- cm.yaml\ncrds:\n- LOC\n",
	"configurations":                "resources:\n- cm.yaml\nconfigurations:\n- LOC\n",
	"replacements[].path":           "resources:\n- cm.yaml\nreplacements:\n- path: LOC\n",
}

// TestNoNetworkWhateverTheField puts a URL of the tripwire server in every
// field that names a location: Render must refuse it, naming the location and
// the kustomization file, before anything is fetched or cloned.
func TestNoNetworkWhateverTheField(t *testing.T) {
	w := newTripwire(t)
	loc := w.url + "/x.yaml"
	for field, kustomization := range locationFields {
		t.Run(field, func(t *testing.T) {
			_, err := renderRepo("", files(
				"kustomization.yaml", strings.ReplaceAll(kustomization, "LOC", loc),
				"cm.yaml", strings.ReplaceAll(cm, "%s", "a"),
			))
			wantRefused(t, err, "kustomization.yaml", loc)
		})
	}
	if what := w.tripped(); what != "" {
		t.Fatalf("kustomize reached out: %s", what)
	}
}

// TestNoNetworkWhateverTheSpelling tries the spellings of a remote base that
// kustomize clones with git, or fetches, which a check for "://" or a
// "github.com/" prefix misses; and the same in a base and in an overlay below
// the root, so the check is not only at the top.
func TestNoNetworkWhateverTheSpelling(t *testing.T) {
	w := newTripwire(t)
	host := strings.TrimPrefix(w.url, "http://")
	spellings := []string{
		"HTTP://" + host + "/x.yaml",
		"https://" + host + "/o/r.git?ref=main",
		"GitHub.com/o/r",
		"github.com/o/r//base?ref=v1",
		"github.com:o/r",
		"git@" + host + ":o/r",
		"user@127.0.0.1:o/r",
		"alice@127.0.0.1/o/r",
		"git::" + w.url + "/o/r",
		"GIT::" + w.url + "/o/r",
		"ssh://git@" + host + "/o/r",
		"file:///tmp/r.git",
		"127.0.0.1:o/r",
		"http:x.yaml",
	}
	for _, s := range spellings {
		t.Run(s, func(t *testing.T) {
			_, err := renderRepo("", files("kustomization.yaml", "resources:\n- "+s+"\n"))
			wantRefused(t, err, "kustomization.yaml", s)

			_, err = renderRepo("overlays/prod", files(
				"overlays/prod/kustomization.yaml", "resources:\n- ../../base\n",
				"base/kustomization.yaml", "resources:\n- cm.yaml\npatches:\n- path: "+s+"\n",
				"base/cm.yaml", strings.ReplaceAll(cm, "%s", "a"),
			))
			wantRefused(t, err, "base/kustomization.yaml", s)
		})
	}
	if what := w.tripped(); what != "" {
		t.Fatalf("kustomize reached out: %s", what)
	}
}

func wantRefused(t *testing.T, err error, file, location string) {
	t.Helper()
	var merr *Error
	if !errors.As(err, &merr) {
		t.Fatalf("got %v, want a *manifest.Error", err)
	}
	if merr.Source != file || !strings.Contains(merr.Message, "remote location") || !strings.Contains(merr.Message, location) {
		t.Fatalf("got %q, want it from %s refusing remote location %q", err, file, location)
	}
}

// TestTripwireCatchesKustomize shows the tripwire works: kustomize on its
// own, without the preflight, fetches a patch from the server and runs git
// for a file:// base (file://, so a real git could not reach a host either).
func TestTripwireCatchesKustomize(t *testing.T) {
	w := newTripwire(t)
	fs := filesys.MakeFsInMemory()
	write := func(p, data string) {
		if err := fs.WriteFile(p, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	write("/cm.yaml", strings.ReplaceAll(cm, "%s", "a"))
	write("/kustomization.yaml", "resources:\n- cm.yaml\npatches:\n- path: "+w.url+"/p.yaml\n")
	_, _ = runKustomize(fs, "/")
	write("/kustomization.yaml", "resources:\n- file:///nonexistent/r.git\n")
	_, _ = runKustomize(fs, "/")
	if what := w.tripped(); what != "HTTP requests, git was run, clone directories left in TMPDIR" {
		t.Fatalf("tripwire saw %q, want all three", what)
	}
}

// TestEveryKustomizationFieldIsKnown fails when a kustomize upgrade adds a
// field to a kustomization, or to the parts of it that hold locations, that
// this package has not classified: a field kustomize loads from must be in
// references (and locationFields), a plugin field in refusePlugins.
func TestEveryKustomizationFieldIsKnown(t *testing.T) {
	known := map[reflect.Type][]string{
		reflect.TypeOf(types.Kustomization{}): {
			// Locations: see locationFields.
			"resources", "bases", "components", "patches", "patchesJson6902", "patchesStrategicMerge",
			"configMapGenerator", "secretGenerator", "openapi", "crds", "configurations", "replacements",
			// Refused: plugins and helm.
			"generators", "transformers", "validators", "helmCharts", "helmChartInflationGenerator", "helmGlobals",
			// Values only.
			"apiVersion", "kind", "metadata", "namePrefix", "nameSuffix", "namespace", "commonLabels", "labels",
			"commonAnnotations", "images", "imageTags", "replicas", "vars", "sortOptions", "generatorOptions",
			"buildMetadata",
		},
		reflect.TypeOf(types.Patch{}):         {"path", "patch", "target", "options"},
		reflect.TypeOf(types.KvPairSources{}): {"literals", "files", "envs", "env"},
		reflect.TypeOf(types.GeneratorArgs{}): {"namespace", "name", "behavior", "literals", "files", "envs", "env", "options"},
		reflect.TypeOf(types.SecretArgs{}): {"namespace", "name", "behavior", "literals", "files", "envs", "env", "options",
			"type"},
		reflect.TypeOf(types.ReplacementField{}): {"path", "source", "targets", "sourceValue"},
	}
	for typ, names := range known {
		got := jsonFields(typ)
		want := map[string]bool{}
		for _, n := range names {
			want[n] = true
			if !got[n] {
				t.Errorf("%s has no field %q any more", typ, n)
			}
		}
		for n := range got {
			if !want[n] {
				t.Errorf("%s has a new field %q: decide whether kustomize loads from it", typ, n)
			}
		}
	}
}

// jsonFields returns the JSON names of typ's fields, inlined structs included.
func jsonFields(typ reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" && f.Anonymous && f.Type.Kind() == reflect.Struct {
			for n := range jsonFields(f.Type) {
				out[n] = true
			}
			continue
		}
		if name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}

// TestRemoteForm checks the detector on its own, both ways: every spelling
// kustomize's loader treats as remote is caught, and ordinary paths are not.
func TestRemoteForm(t *testing.T) {
	for _, s := range []string{
		"https://example.com/x.yaml", "HTTP://example.com/x", "http:x", "github.com/o/r", "GITHUB.COM/o/r",
		"github.com:o/r", "git@example.com:o/r", "u@example.com/o/r", "git::https://example.com/o/r",
		"ssh://example.com/o/r", "file:///r", "example.com:o/r", " https://example.com/x",
	} {
		if remoteForm(s) == "" {
			t.Errorf("remoteForm(%q) = \"\", want it refused", s)
		}
	}
	for _, s := range []string{
		"base", "../../base", "./patch.yaml", "/abs/path.yaml", "dir/github.com/x", "config/app.properties",
		"a.b/c", ".env",
	} {
		if why := remoteForm(s); why != "" {
			t.Errorf("remoteForm(%q) = %q, want a local path", s, why)
		}
	}
}
