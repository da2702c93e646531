// Package manifest turns the files of one path of a commit into Kubernetes
// objects: a directory of YAML and JSON files, or a kustomization built
// in memory with no remote bases, plugins or exec functions. Any error names
// the file, so a user can fix the commit; nothing partial is returned.
package manifest

import (
	"bytes"
	"fmt"
	"path"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/falsesystems/alumiini/pkg/git"
)

// Object is one object to apply and where it came from.
type Object struct {
	*unstructured.Unstructured
	// Source is the file (and document) it was read from, for messages.
	Source string
}

// ID is the identity of an object in a sync: group, kind, namespace, name.
type ID struct {
	Group     string
	Kind      string
	Namespace string
	Name      string
}

func (id ID) String() string {
	kind := id.Kind
	if id.Group != "" {
		kind += "." + id.Group
	}
	if id.Namespace != "" {
		return fmt.Sprintf("%s %s/%s", kind, id.Namespace, id.Name)
	}
	return fmt.Sprintf("%s %s", kind, id.Name)
}

// IDOf returns the identity of u.
func IDOf(u *unstructured.Unstructured) ID {
	gvk := u.GroupVersionKind()
	return ID{Group: gvk.Group, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
}

// Error is a rendering failure; Source names the file.
type Error struct {
	Source  string
	Message string
}

func (e *Error) Error() string { return e.Source + ": " + e.Message }

var kustomizationNames = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

// Render reads the files (paths relative to the GitRepository's path) into
// objects. A kustomization at the top is built; otherwise every .yaml, .yml
// and .json file is read, in path order, and other files are skipped.
func Render(files []git.File) ([]Object, error) {
	var objects []Object
	var err error
	if isKustomization(files) {
		objects, err = build(files)
	} else {
		objects, err = readDirectory(files)
	}
	if err != nil {
		return nil, err
	}
	return objects, checkDuplicates(objects)
}

func isKustomization(files []git.File) bool {
	for _, f := range files {
		for _, name := range kustomizationNames {
			if f.Path == name {
				return true
			}
		}
	}
	return false
}

func readDirectory(files []git.File) ([]Object, error) {
	sorted := append([]git.File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	var objects []Object
	for _, f := range sorted {
		switch strings.ToLower(path.Ext(f.Path)) {
		case ".yaml", ".yml", ".json":
		default:
			continue
		}
		if isHidden(f.Path) {
			continue
		}
		docs, err := Decode(f.Path, f.Data)
		if err != nil {
			return nil, err
		}
		objects = append(objects, docs...)
	}
	return objects, nil
}

// isHidden skips dot-files and anything under a dot-directory, as kubectl does
// not, but as every GitOps tool's users expect (.github/, .gitlab-ci.yml).
func isHidden(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if strings.HasPrefix(part, ".") {
			return true
		}
	}
	return false
}

// Decode splits a YAML or JSON file into objects. Documents that are empty,
// or kustomize configuration, are skipped; a List is expanded.
func Decode(file string, data []byte) ([]Object, error) {
	var objects []Object
	for _, doc := range splitDocuments(data) {
		source := file
		if doc.line > 1 {
			source = fmt.Sprintf("%s:%d", file, doc.line)
		}
		if len(bytes.TrimSpace(stripComments(doc.data))) == 0 {
			continue
		}
		var content map[string]interface{}
		if err := yaml.Unmarshal(doc.data, &content); err != nil {
			return nil, &Error{Source: source, Message: "invalid YAML: " + offsetLines(err.Error(), doc.line-1)}
		}
		if content == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: content}
		if strings.HasPrefix(u.GetAPIVersion(), "kustomize.config.k8s.io/") {
			continue
		}
		if u.IsList() {
			list, err := u.ToList()
			if err != nil {
				return nil, &Error{Source: source, Message: "invalid List: " + err.Error()}
			}
			for i := range list.Items {
				item := list.Items[i]
				if err := check(&item); err != nil {
					return nil, &Error{Source: fmt.Sprintf("%s (item %d)", source, i), Message: err.Error()}
				}
				objects = append(objects, Object{Unstructured: &item, Source: source})
			}
			continue
		}
		if err := check(u); err != nil {
			return nil, &Error{Source: source, Message: err.Error()}
		}
		objects = append(objects, Object{Unstructured: u, Source: source})
	}
	return objects, nil
}

func check(u *unstructured.Unstructured) error {
	switch {
	case u.GetAPIVersion() == "":
		return fmt.Errorf("object has no apiVersion")
	case u.GetKind() == "":
		return fmt.Errorf("object has no kind")
	case u.GetName() == "":
		return fmt.Errorf("%s has no metadata.name", u.GetKind())
	}
	if _, err := schema.ParseGroupVersion(u.GetAPIVersion()); err != nil {
		return fmt.Errorf("apiVersion %q: %v", u.GetAPIVersion(), err)
	}
	return nil
}

type document struct {
	data []byte
	line int
}

// splitDocuments splits YAML on "---" lines, keeping each document's first
// line number for messages.
func splitDocuments(data []byte) []document {
	var docs []document
	lines := bytes.SplitAfter(data, []byte("\n"))
	start := 1
	var current bytes.Buffer
	for i, line := range lines {
		trimmed := bytes.TrimRight(line, "\r\n")
		if bytes.Equal(trimmed, []byte("---")) || bytes.HasPrefix(trimmed, []byte("--- ")) {
			docs = append(docs, document{data: append([]byte(nil), current.Bytes()...), line: start})
			current.Reset()
			start = i + 2
			continue
		}
		current.Write(line)
	}
	return append(docs, document{data: current.Bytes(), line: start})
}

func stripComments(data []byte) []byte {
	var out bytes.Buffer
	for _, line := range bytes.Split(data, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out.Write(line)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

// offsetLines rewrites "line N" in a YAML error to count from the file's
// start rather than the document's.
func offsetLines(msg string, offset int) string {
	if offset == 0 {
		return msg
	}
	var n int
	if i := strings.Index(msg, "line "); i >= 0 {
		if _, err := fmt.Sscanf(msg[i:], "line %d", &n); err == nil {
			return strings.Replace(msg, fmt.Sprintf("line %d", n), fmt.Sprintf("line %d", n+offset), 1)
		}
	}
	return msg
}

// build runs kustomize over an in-memory copy of the files: it cannot read
// outside them, and remote bases, plugins and exec functions are refused.
func build(files []git.File) ([]Object, error) {
	fs := filesys.MakeFsInMemory()
	for _, f := range files {
		if err := fs.MkdirAll(path.Dir("/" + f.Path)); err != nil {
			return nil, err
		}
		if err := fs.WriteFile("/"+f.Path, f.Data); err != nil {
			return nil, err
		}
		if isKustomizationFile(f.Path) {
			if err := refuseRemote(f); err != nil {
				return nil, err
			}
		}
	}
	opts := krusty.MakeDefaultOptions()
	opts.PluginConfig = types.DisabledPluginConfig()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	resources, err := krusty.MakeKustomizer(opts).Run(fs, "/")
	if err != nil {
		return nil, &Error{Source: "kustomization.yaml", Message: "kustomize build failed: " + err.Error()}
	}
	var objects []Object
	for _, r := range resources.Resources() {
		content, err := r.Map()
		if err != nil {
			return nil, &Error{Source: "kustomization.yaml", Message: err.Error()}
		}
		u := &unstructured.Unstructured{Object: content}
		if err := check(u); err != nil {
			return nil, &Error{Source: "kustomization.yaml", Message: err.Error()}
		}
		objects = append(objects, Object{Unstructured: u, Source: "kustomization.yaml (" + IDOf(u).String() + ")"})
	}
	return objects, nil
}

func isKustomizationFile(p string) bool {
	base := path.Base(p)
	for _, name := range kustomizationNames {
		if base == name {
			return true
		}
	}
	return false
}

func refuseRemote(f git.File) error {
	var k types.Kustomization
	if err := yaml.Unmarshal(f.Data, &k); err != nil {
		return &Error{Source: f.Path, Message: "invalid kustomization: " + err.Error()}
	}
	refs := append(append(append([]string{}, k.Resources...), k.Components...), k.Bases...) //nolint:staticcheck // Bases is deprecated but still read by kustomize
	for _, ref := range refs {
		if strings.Contains(ref, "://") || strings.HasPrefix(ref, "git@") || strings.HasPrefix(ref, "github.com/") {
			return &Error{Source: f.Path, Message: fmt.Sprintf("remote base %q is not allowed: vendor it into the repository", ref)}
		}
	}
	if len(k.HelmCharts) > 0 || len(k.Generators) > 0 || len(k.Transformers) > 0 || len(k.Validators) > 0 {
		return &Error{Source: f.Path, Message: "helmCharts, generators, transformers and validators (plugins) are not allowed"}
	}
	return nil
}

func checkDuplicates(objects []Object) error {
	seen := map[ID]string{}
	for _, o := range objects {
		id := IDOf(o.Unstructured)
		if first, ok := seen[id]; ok {
			return &Error{Source: o.Source, Message: fmt.Sprintf("%s is also defined in %s", id, first)}
		}
		seen[id] = o.Source
	}
	return nil
}
