package manifest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	apipath "k8s.io/apimachinery/pkg/api/validation/path"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
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

// Error is a rendering failure; Source names the file (and where in it),
// relative to the repository root.
type Error struct {
	Source  string
	Message string
	// Err is the cause when it is worth testing for (a ctx error, the
	// ReadFunc's error); it is already part of Message.
	Err error
}

func (e *Error) Error() string { return e.Source + ": " + e.Message }

// Unwrap returns the cause, so errors.Is(err, context.Canceled) works.
func (e *Error) Unwrap() error { return e.Err }

// Render reads dir (slash-separated, relative to the repository root, "" for
// the root) into objects. If dir holds a kustomization at its top, it is built
// over the whole repository, read with read(ctx, ""): bases and patches may be
// anywhere in the repository and nowhere else, and nothing is fetched over the
// network. Otherwise every .yaml, .yml and .json file under dir is read, in
// path order, skipping hidden ones, and only dir is read.
//
// Every failure is an *Error naming the file, relative to the repository
// root; nothing partial is returned. If ctx ends first, the *Error wraps
// ctx.Err().
func Render(ctx context.Context, dir string, read ReadFunc, opts ...Option) ([]Object, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	dir, err := cleanDir(dir)
	if err != nil {
		return nil, err
	}
	files, err := read(ctx, dir)
	if err != nil {
		return nil, readError(ctx, dir, err)
	}
	var objects []Object
	if kustomizationFile(files) != "" {
		objects, err = renderKustomization(ctx, dir, files, read, o)
	} else {
		objects, err = readDirectory(ctx, dir, files, &objectCount{max: o.maxObjects})
	}
	if err != nil {
		return nil, err
	}
	return objects, checkDuplicates(objects)
}

// Option bounds one Render.
type Option func(*options)

type options struct {
	maxObjects int
	kustomize  KustomizeFunc
}

// MaxObjects fails a render that yields more than n objects (0: no bound).
// A directory stops decoding at the first object too many: tiny documents
// take some fifty times their size once decoded.
func MaxObjects(n int) Option { return func(o *options) { o.maxObjects = n } }

// objectCount counts decoded objects against their bound.
type objectCount struct{ n, max int }

func (c *objectCount) add(source string) error {
	if c.n++; c.max > 0 && c.n > c.max {
		return tooManyObjects(source, c.max)
	}
	return nil
}

// ErrTooManyObjects is wrapped by the error of a render over MaxObjects.
var ErrTooManyObjects = errors.New("too many objects")

func tooManyObjects(source string, max int) error {
	return &Error{Source: source, Err: ErrTooManyObjects, Message: fmt.Sprintf(
		"more than the limit of %d objects per GitRepository (--max-objects); split it over several GitRepositories", max)}
}

func readDirectory(ctx context.Context, dir string, files []git.File, count *objectCount) ([]Object, error) {
	sorted := append([]git.File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	// One budget for the whole directory: many files, each with a few
	// aliases, must not add up to what one file may not do.
	var budget aliasBudget
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
		if err := ctx.Err(); err != nil {
			return nil, stopped(path.Join(dir, f.Path), err)
		}
		docs, err := decode(path.Join(dir, f.Path), f.Data, &budget, count)
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
// or kustomize configuration, are skipped; a List is expanded. YAML whose
// aliases expand far beyond its own size is refused (see aliasBudget).
func Decode(file string, data []byte) ([]Object, error) {
	return decode(file, data, &aliasBudget{}, &objectCount{})
}

func decode(file string, data []byte, budget *aliasBudget, count *objectCount) ([]Object, error) {
	var objects []Object
	for _, doc := range splitDocuments(data) {
		source := file
		if doc.line > 1 {
			source = fmt.Sprintf("%s:%d", file, doc.line)
		}
		if len(bytes.TrimSpace(stripComments(doc.data))) == 0 {
			continue
		}
		// Counted before it is parsed: as an object, and its aliases exactly
		// as the parser will see them.
		if err := count.add(source); err != nil {
			return nil, err
		}
		if err := budget.chargeDocument(source, doc.data); err != nil {
			return nil, err
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
				if i > 0 {
					if err := count.add(source); err != nil {
						return nil, err
					}
				}
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
	// The name and namespace become segments of request paths: "..", "/"
	// or "%" would point a request (a dry-run included) elsewhere.
	for _, field := range [][2]string{{"metadata.name", u.GetName()}, {"metadata.namespace", u.GetNamespace()}} {
		if field[1] == "" {
			continue
		}
		if msgs := apipath.IsValidPathSegmentName(field[1]); len(msgs) > 0 {
			return fmt.Errorf("%s %s %q: %s", u.GetKind(), field[0], field[1], strings.Join(msgs, "; "))
		}
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
